// Command load is Tandem's load driver. It starts a cluster on loopback as
// child processes, drives it with virtual users (each with its own cookie
// jar and keep-alive connection, through a lean HTTP/1.1 client), and
// reports throughput, latency, replication bytes, CPU cost and, in the
// failover scenario, what a crash cost.
//
//	go run ./bench/load -nodes 3 -mode sync -clients 64 -duration 10s -write-ratio 1
//	go run ./bench/load -scenario failover -kill-after 4s -duration 10s
//	go run ./bench/load -target gincontrib-redis -nodes 3
//	go run ./bench/load -tune -sample bench/testdata/session.json
//
// Targets: tandem (the demo node app, internal/nodeapp: Gin with
// ginsession and a buddy.Node), and the peers of bench/peers/cmd/peerapp
// (nosession, gincontrib-cookie, gincontrib-redis, scs-mem, scs-redis),
// plus gincontrib-redis-2node, two Gin nodes sharing one Redis, the
// failover peer. The driver builds the peer app with go build in
// bench/peers and starts redis-server (Debian's) itself.
//
// Nodes are the driver re-executed in a hidden child mode, so a kill is a
// real SIGKILL. Users are routed as a sticky load balancer would, without a
// proxy hop: to the node their tandem_node cookie names (Tandem), or to the
// node they were assigned at start (peers), and to the next live node when
// that one refuses connections.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tandemsession/tandem/bench/internal/inproc"
	"github.com/tandemsession/tandem/bench/internal/loadgen"
	"github.com/tandemsession/tandem/bench/internal/loadreport"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

func main() {
	if os.Getenv(envChild) == "node" {
		if err := runChild(); err != nil {
			fmt.Fprintf(os.Stderr, "node %s: %v\n", os.Getenv(envID), err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run())
}

// options are the command's flags.
type options struct {
	nodes          int
	mode           string
	codec          string
	batch          int
	clients        int
	duration       time.Duration
	warmup         time.Duration
	requests       int64
	sessionSize    int
	writeRatio     float64
	scenario       string
	killAfter      time.Duration
	kill           string
	redisRestart   time.Duration
	jsonOut        string
	target         string
	sample         string
	peersDir       string
	verify         bool
	verbose        bool
	tune           bool
	tuneDuration   time.Duration
	tuneRounds     int
	label          string
	quiet          bool
	bucket         time.Duration
	nodeLogLevel   string
	keys           int
	requestTimeout time.Duration
}

// Targets lists the -target values.
var Targets = []string{"tandem", "nosession", "gincontrib-cookie", "gincontrib-redis", "scs-mem", "scs-redis", "gincontrib-redis-2node"}

func run() int {
	var o options
	flag.IntVar(&o.nodes, "nodes", 3, "number of application nodes (1 to 9)")
	flag.StringVar(&o.mode, "mode", "sync", "tandem replication: off, async or sync")
	flag.StringVar(&o.codec, "codec", "", "tandem replication codec: none, s2, zstd-fastest, zstd, zstd-better (default s2, buddy.DefaultCodec)")
	flag.IntVar(&o.batch, "batch", 0, "tandem MaxBatchRecords (0: the default, 1024)")
	flag.IntVar(&o.clients, "clients", 64, "concurrent virtual users, one session and one request at a time each")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured phase (a bound: -requests may end it first)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before the measured phase")
	flag.Int64Var(&o.requests, "requests", 5_000_000, "cap on measured requests")
	flag.IntVar(&o.sessionSize, "session-size", 1024, "bytes each user's session holds before the run (keys plus JSON values)")
	flag.Float64Var(&o.writeRatio, "write-ratio", 0.5, "share of requests that write one small attribute (0 to 1); the rest read one")
	flag.StringVar(&o.scenario, "scenario", "steady", "steady, or failover (kill something at -kill-after and verify every acknowledged write)")
	flag.DurationVar(&o.killAfter, "kill-after", 0, "with -scenario failover: when to kill, into the measured phase (default a third of -duration)")
	flag.StringVar(&o.kill, "kill", "", "with -scenario failover: node (SIGKILL the first node) or redis (SIGKILL Redis); default redis for Redis targets, node otherwise")
	flag.DurationVar(&o.redisRestart, "redis-restart", 2*time.Second, "after a Redis kill, restart it (empty: no persistence) this long after; 0: never")
	flag.StringVar(&o.jsonOut, "json", "", "write the report as JSON to this file (- for stdout)")
	flag.StringVar(&o.target, "target", "tandem", "what to load: "+strings.Join(Targets, ", "))
	flag.StringVar(&o.sample, "sample", "", "sample session, a JSON object of attribute to value (default bench/testdata/session.json)")
	flag.StringVar(&o.peersDir, "peers-dir", "", "the bench/peers module (default: found from the working directory)")
	flag.BoolVar(&o.verify, "verify", false, "check every acknowledged write at the end (always on with -scenario failover)")
	flag.BoolVar(&o.verbose, "v", false, "copy the children's output to stderr")
	flag.StringVar(&o.nodeLogLevel, "node-log", "", "tandem nodes' log level (debug, info, warn, error; default none)")
	flag.BoolVar(&o.tune, "tune", false, "tuning mode: sweep codec, batch size and mode on the -sample session and recommend a configuration")
	flag.DurationVar(&o.tuneDuration, "tune-duration", 1500*time.Millisecond, "with -tune: measured time per configuration")
	flag.IntVar(&o.tuneRounds, "tune-rounds", 2, "with -tune: interleaved rounds per configuration (their mean is used)")
	flag.StringVar(&o.label, "label", "", "a name for this run in the report (default: target and mode)")
	flag.BoolVar(&o.quiet, "q", false, "no table on stdout")
	flag.DurationVar(&o.bucket, "bucket", 100*time.Millisecond, "timeline resolution")
	flag.IntVar(&o.keys, "keys", 8, "small attributes the writes rotate over")
	flag.DurationVar(&o.requestTimeout, "request-timeout", 5*time.Second, "bound on one request")
	flag.Parse()

	if o.sample == "" {
		o.sample = findFile(filepath.Join("bench", "testdata", "session.json"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.tune {
		err = tune(ctx, o)
	} else {
		err = runLoad(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	return 0
}

func (o *options) validate() error {
	switch {
	case o.nodes < 1 || o.nodes > 9:
		return errors.New("-nodes must be 1 to 9")
	case o.clients < 1 || o.clients > 10000:
		return errors.New("-clients must be 1 to 10000")
	case o.writeRatio < 0 || o.writeRatio > 1:
		return errors.New("-write-ratio must be 0 to 1")
	case o.duration <= 0 || o.duration > time.Hour:
		return errors.New("-duration must be above 0 and at most 1h")
	case o.requests <= 0:
		return errors.New("-requests must be above 0")
	case o.scenario != "steady" && o.scenario != "failover":
		return errors.New("-scenario must be steady or failover")
	case o.sessionSize < 0 || o.sessionSize > 1<<20:
		return errors.New("-session-size must be 0 to 1 MiB")
	}
	if _, err := inproc.ParseMode(o.mode); err != nil {
		return err
	}
	for _, t := range Targets {
		if t == o.target {
			return nil
		}
	}
	return fmt.Errorf("-target %q: want one of %s", o.target, strings.Join(Targets, ", "))
}

// findFile returns rel resolved against the working directory or one of
// its parents, or rel itself.
func findFile(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return rel
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return rel
		}
		dir = parent
	}
}

// system is what runs under load: the application nodes, and Redis for
// the Redis peers.
type system struct {
	o           options
	nodes       []*proc
	addrs, ids  []string
	routeCookie string
	redis       *proc
	redisPort   int
	tmp         string
	mu          sync.Mutex
	deadCPU     time.Duration // CPU of replaced processes (a killed Redis)
}

func (s *system) procs() []*proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]*proc(nil), s.nodes...)
	if s.redis != nil {
		out = append(out, s.redis)
	}
	return out
}

// cpu sums the CPU time of every server process, killed ones up to their
// kill, a replaced Redis included.
func (s *system) cpu() time.Duration {
	var d time.Duration
	for _, p := range s.procs() {
		d += p.cpu()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return d + s.deadCPU
}

func (s *system) stop() {
	for _, p := range s.procs() {
		p.stop(15 * time.Second)
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

func startSystem(ctx context.Context, o options) (*system, error) {
	s := &system{o: o}
	var err error
	if o.target == "tandem" {
		err = s.startTandem()
	} else {
		err = s.startPeers(ctx)
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *system) startTandem() error {
	o := s.o
	self, err := os.Executable()
	if err != nil {
		return err
	}
	peers := make([]buddy.Peer, o.nodes)
	files := make([][]*os.File, o.nodes)
	for i := range o.nodes {
		httpAddr, hf, err := listenFile()
		if err != nil {
			return err
		}
		replAddr, rf, err := listenFile()
		if err != nil {
			return err
		}
		peers[i] = buddy.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: replAddr}
		files[i] = []*os.File{hf, rf}
		s.addrs = append(s.addrs, httpAddr)
		s.ids = append(s.ids, peers[i].ID)
	}
	for i := range o.nodes {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(),
			envChild+"=node", envID+"="+peers[i].ID, envPeers+"="+formatPeers(peers),
			envMode+"="+o.mode, envCodec+"="+o.codec, envBatch+"="+strconv.Itoa(o.batch),
			envLog+"="+o.nodeLogLevel)
		p, err := start(peers[i].ID, cmd, files[i], o.verbose)
		for _, f := range files[i] {
			f.Close()
		}
		if err != nil {
			return err
		}
		s.nodes = append(s.nodes, p)
	}
	s.routeCookie = nodeapp.RouteCookie
	for i, p := range s.nodes {
		if err := waitHTTP(p, "http://"+s.addrs[i]+"/healthz", 20*time.Second); err != nil {
			return err
		}
	}
	if o.mode == string(inproc.Off) || o.nodes == 1 {
		return nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for { // every node has its buddy
		ready := true
		for _, a := range s.addrs {
			st, err := inproc.FetchStats(a)
			if err != nil || st.Stats.Buddy == "" {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the cluster did not form")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peerVariant maps a -target to the peer app's -variant.
func peerVariant(target string) string {
	if target == "gincontrib-redis-2node" {
		return "gincontrib-redis"
	}
	return target
}

func usesRedis(target string) bool { return strings.Contains(target, "redis") }

func (s *system) startPeers(ctx context.Context) error {
	o := s.o
	dir := o.peersDir
	if dir == "" {
		dir = findFile(filepath.Join("bench", "peers"))
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return fmt.Errorf("bench/peers not found (run from the repository, or set -peers-dir): %w", err)
	}
	tmp, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return err
	}
	s.tmp = tmp
	bin := filepath.Join(tmp, "peerapp")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/peerapp")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", dir, err, out)
	}
	if usesRedis(o.target) {
		if s.redisPort, err = freePort(); err != nil {
			return err
		}
		if s.redis, err = startRedis(s.redisPort, o.verbose); err != nil {
			return err
		}
	}
	for i := range o.nodes {
		addr, f, err := listenFile()
		if err != nil {
			return err
		}
		id := fmt.Sprintf("p%d", i+1)
		args := []string{"-variant", peerVariant(o.target), "-listen-fd", "3", "-id", id}
		if s.redis != nil {
			args = append(args, "-redis", "127.0.0.1:"+strconv.Itoa(s.redisPort))
		}
		p, err := start(id, exec.Command(bin, args...), []*os.File{f}, o.verbose)
		f.Close()
		if err != nil {
			return err
		}
		s.nodes = append(s.nodes, p)
		s.addrs = append(s.addrs, addr)
		s.ids = append(s.ids, id)
	}
	for i, p := range s.nodes {
		if err := waitHTTP(p, "http://"+s.addrs[i]+"/healthz", 20*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// killRedis SIGKILLs Redis and, after restart (if > 0), starts an empty one
// on the same port.
func (s *system) killRedis(restart time.Duration, restarted func()) {
	s.mu.Lock()
	r := s.redis
	s.mu.Unlock()
	if r == nil {
		return
	}
	r.kill()
	s.mu.Lock()
	s.deadCPU += r.cpu()
	s.redis = nil
	s.mu.Unlock()
	if restart <= 0 {
		return
	}
	time.Sleep(restart)
	nr, err := startRedis(s.redisPort, s.o.verbose)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load: restarting redis:", err)
		return
	}
	s.mu.Lock()
	s.redis = nr
	s.mu.Unlock()
	restarted()
}

func machine() loadreport.Machine {
	m := loadreport.Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemGiB = float64(int(kb/(1<<20)*10+0.5)) / 10
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// statsWatch keeps the latest /api/stats of every Tandem node and the
// largest queue seen.
type statsWatch struct {
	addrs    []string
	mu       sync.Mutex
	last     []nodeapp.StatsInfo
	maxQueue int
}

// poll reads every node's stats and returns the records queued on the
// nodes that answered.
func (w *statsWatch) poll() int {
	depth := 0
	for i, a := range w.addrs {
		st, err := inproc.FetchStats(a)
		if err != nil {
			continue // a killed node keeps its last reading
		}
		w.mu.Lock()
		w.last[i] = st
		w.mu.Unlock()
		depth += st.Stats.QueueDepth
	}
	w.mu.Lock()
	w.maxQueue = max(w.maxQueue, depth)
	w.mu.Unlock()
	return depth
}

func (w *statsWatch) sum() inproc.Repl {
	w.mu.Lock()
	defer w.mu.Unlock()
	return inproc.Sum(w.last)
}

func runLoad(ctx context.Context, o options) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.target == "gincontrib-redis-2node" {
		o.nodes = 2
	}
	if o.target != "tandem" {
		o.mode, o.codec = "", ""
	}
	failover := o.scenario == "failover"
	if failover {
		o.verify = true
		if o.killAfter <= 0 {
			o.killAfter = o.duration / 3
		}
		if o.kill == "" {
			o.kill = "node"
			if usesRedis(o.target) {
				o.kill = "redis"
			}
		}
		if o.kill == "redis" && !usesRedis(o.target) {
			return errors.New("-kill redis needs a Redis target")
		}
		if o.kill == "node" && o.nodes < 2 {
			return errors.New("-kill node needs at least 2 nodes")
		}
	}
	sample, err := loadgen.ReadSample(o.sample)
	if err != nil {
		return err
	}
	var session []loadgen.Attr
	if o.sessionSize > 0 {
		session = loadgen.SizedSession(sample, o.sessionSize)
	}

	rep := &loadreport.Report{
		Label: o.label, Target: o.target, Nodes: o.nodes, Mode: o.mode, Codec: o.codec,
		Clients: o.clients, WriteRatio: o.writeRatio, SessionSize: loadgen.EncodedSize(session),
		Scenario: o.scenario, Duration: o.duration.String(), Warmup: o.warmup.String(),
		Command: "go run ./bench/load " + strings.Join(os.Args[1:], " "),
		Date:    time.Now().UTC().Format(time.RFC3339), Machine: machine(),
	}
	if rep.Label == "" {
		rep.Label = o.target
		if o.target == "tandem" {
			rep.Label += "-" + o.mode
		}
	}
	if o.target == "tandem" {
		cc := compress.Config{Codec: o.codec}
		rep.FullCopyRaw, rep.FullCopyWire, err = loadgen.FullCopyWireSize(session, cc)
		if err != nil {
			return err
		}
	}

	sys, err := startSystem(ctx, o)
	if err != nil {
		return err
	}
	defer sys.stop()
	finished := make(chan struct{})
	defer close(finished)
	go func() { // Ctrl-C: stop the children at once
		select {
		case <-ctx.Done():
			for _, p := range sys.procs() {
				p.kill()
			}
		case <-finished:
		}
	}()

	var watch *statsWatch
	if o.target == "tandem" {
		watch = &statsWatch{addrs: sys.addrs, last: make([]nodeapp.StatsInfo, len(sys.addrs))}
	}
	var (
		cpu0, self0            time.Duration
		repl0                  inproc.Repl
		cpu1, self1            time.Duration
		repl1                  inproc.Repl
		stopWatch              = make(chan struct{})
		watchDone              = make(chan struct{})
		drain                  time.Duration
		killReport             *loadreport.KillReport
		measureStart, killTime time.Time
		restartAt              atomic.Int64
	)
	opts := loadgen.Options{
		Clients: o.clients, Duration: o.duration, Requests: o.requests, Warmup: o.warmup,
		WriteRatio: o.writeRatio, Session: session, Keys: o.keys, Verify: o.verify,
		Bucket: o.bucket, Timeout: o.requestTimeout,
		OnMeasure: func() {
			measureStart = time.Now()
			if watch != nil {
				watch.poll()
				repl0 = watch.sum()
				watch.maxQueue = 0
				go func() {
					defer close(watchDone)
					t := time.NewTicker(250 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stopWatch:
							return
						case <-t.C:
							watch.poll()
						}
					}
				}()
			}
			cpu0, self0 = sys.cpu(), selfCPU()
		},
		OnDone: func() {
			cpu1, self1 = sys.cpu(), selfCPU()
			if watch != nil {
				close(stopWatch)
				<-watchDone
				watch.poll()
				repl1 = watch.sum()
				t0 := time.Now()
				for time.Since(t0) < 10*time.Second {
					if watch.poll() == 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				drain = time.Since(t0)
			}
		},
	}
	if failover {
		ev := loadgen.Event{At: o.killAfter, Name: "kill-" + o.kill}
		switch o.kill {
		case "node":
			ev.Do = func() {
				killTime = time.Now()
				sys.nodes[0].kill()
				killReport = &loadreport.KillReport{What: "SIGKILL " + sys.ids[0], AtMs: ms(killTime.Sub(measureStart))}
			}
		case "redis":
			ev.Do = func() {
				killTime = time.Now()
				killReport = &loadreport.KillReport{What: "SIGKILL redis-server", AtMs: ms(killTime.Sub(measureStart))}
				if o.redisRestart > 0 {
					killReport.What += fmt.Sprintf(", restarted empty after %v", o.redisRestart)
				}
				go sys.killRedis(o.redisRestart, func() {
					restartAt.Store(int64(time.Since(measureStart)))
				})
			}
		default:
			return fmt.Errorf("-kill %q: want node or redis", o.kill)
		}
		opts.Events = []loadgen.Event{ev}
	}

	res, err := loadgen.Run(loadgen.Target{Addrs: sys.addrs, IDs: sys.ids, RouteCookie: sys.routeCookie}, opts)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.Load = res
	rep.Kill = killReport
	if d := restartAt.Load(); d > 0 && killReport != nil {
		killReport.RestartMs = ms(time.Duration(d))
	}
	rep.RPS, rep.P50, rep.P99, rep.P999 = res.RPS, res.P50/1000, res.P99/1000, res.P999/1000
	rep.ServerCPU = (cpu1 - cpu0).Seconds()
	rep.DriverCPU = (self1 - self0).Seconds()
	if res.OK > 0 {
		rep.ServerCPUPer1k = rep.ServerCPU / float64(res.OK) * 1000
		rep.DriverCPUPer1k = rep.DriverCPU / float64(res.OK) * 1000
	}
	if watch != nil && o.mode != string(inproc.Off) {
		d := repl1.Sub(repl0)
		rr := &loadreport.ReplReport{Repl: d, MaxQueue: watch.maxQueue, DrainMs: ms(drain)}
		rr.WirePerRecord, rr.RawPerRecord = d.PerRecord()
		if res.Writes > 0 {
			rr.WirePerWrite = float64(d.BytesWire) / float64(res.Writes)
		}
		if d.Batches > 0 {
			rr.RecordsPerBatch = float64(d.Records) / float64(d.Batches)
		}
		rr.RTTP50, rr.RTTP99 = d.Latency.Quantile(0.5), d.Latency.Quantile(0.99)
		rep.Repl = rr
	}
	if !o.quiet {
		printReport(os.Stdout, rep)
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if o.jsonOut == "-" {
			_, err = os.Stdout.Write(b)
		} else {
			err = os.WriteFile(o.jsonOut, b, 0o644)
		}
		if err != nil {
			return err
		}
	}
	if res.SeedFailures > 0 {
		return fmt.Errorf("%d of %d sessions could not be seeded (statuses %v, errors %v)", res.SeedFailures, o.clients, res.Statuses, res.Errors)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func printReport(w io.Writer, r *loadreport.Report) {
	what := r.Target
	if r.Mode != "" {
		what += ", " + r.Mode
		if r.Codec != "" {
			what += ", " + r.Codec
		}
	}
	fmt.Fprintf(w, "%s: %d nodes (%s), %d clients, write ratio %.2f, session %d B, %s (+%s warm-up), %s\n",
		r.Label, r.Nodes, what, r.Clients, r.WriteRatio, r.SessionSize, r.Duration, r.Warmup, r.Scenario)
	l := r.Load
	row := func(k, f string, a ...any) { fmt.Fprintf(w, "  %-34s "+f+"\n", append([]any{k}, a...)...) }
	row("requests/s", "%.0f  (%d ok, %d failed)", r.RPS, l.OK, l.Failed)
	row("latency p50 / p99 / p99.9", "%.2f / %.2f / %.2f ms", r.P50, r.P99, r.P999)
	row("CPU s per 1k requests: servers", "%.4f  (%.1f s)", r.ServerCPUPer1k, r.ServerCPU)
	row("CPU s per 1k requests: driver", "%.4f  (%.1f s)", r.DriverCPUPer1k, r.DriverCPU)
	if len(l.Statuses) > 0 || len(l.Errors) > 0 {
		row("failures", "statuses %v, errors %v", l.Statuses, l.Errors)
	}
	if rr := r.Repl; rr != nil {
		row("wire bytes per write", "%.1f  (per record %.1f, raw %.1f; %.1f records/batch)", rr.WirePerWrite, rr.WirePerRecord, rr.RawPerRecord, rr.RecordsPerBatch)
		if r.FullCopyWire > 0 {
			row("whole session on the wire", "%d B (raw %d B)", r.FullCopyWire, r.FullCopyRaw)
		}
		row("batch round trip p50 / p99", "<= %d / <= %d us", rr.RTTP50, rr.RTTP99)
		row("replication lag: max queue, drain", "%d records, %.0f ms", rr.MaxQueue, rr.DrainMs)
		if rr.Degraded+rr.SendErrors+rr.FullCopies > 0 {
			row("degraded / send errors / full copies", "%d / %d / %d", rr.Degraded, rr.SendErrors, rr.FullCopies)
		}
	}
	if k := r.Kill; k != nil {
		row("killed", "%s at %.0f ms", k.What, k.AtMs)
	}
	if f := l.Failover; f != nil {
		row("failover: users affected / recovered", "%d / %d", f.Affected, f.Recovered)
		row("failover: recovery p50 / max", "%.0f / %.0f ms after the kill", f.RecoveryP50, f.RecoveryMax)
		row("failover: failed requests, window", "%d, %.0f ms", f.FailedAfter, f.Window)
	}
	if v := l.Verify; v != nil {
		row("acknowledged writes lost", "%d of %d", v.LostWrites, v.AckedWrites)
		row("sessions lost / unreadable", "%d / %d of %d", v.SessionsLost, v.Unreadable, v.Users)
	}
}
