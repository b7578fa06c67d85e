// Package clusterapp is the cluster example behind examples/cluster: three
// nodes of examples/node (the demo shop, with the load-test routes of
// internal/nodeapp) as child processes, a sticky load balancer in front of
// them that routes by the tandem_node cookie and falls over to another
// node, and a live dashboard at /dashboard with buttons to kill and restart
// nodes.
//
// Main is the whole command, parent and node alike (the nodes are the
// command re-executed). A command built on Main may offer memberships
// besides static (Config.Memberships): examples/cluster/memberlist, a
// module of its own, offers hashicorp/memberlist's, which Tandem's root
// module does not depend on.
package clusterapp

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/examples/node"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// Main runs the command with the process's arguments and returns its exit
// code. Run as a node child (the command re-executing itself), it runs the
// node until SIGTERM instead.
func Main(cfg Config) int {
	if id := os.Getenv(envNodeID); id != "" {
		if err := runChild(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "node %s: %v\n", id, err)
			return 1
		}
		return 0
	}
	return run(cfg)
}

// options are the command's flags.
type options struct {
	addr       string
	demo       bool
	nodes      int
	sessions   int
	mode       string
	verbose    bool
	logLevel   string
	membership string
}

func run(cfg Config) int {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "the balancer's listen address (with -demo: a free port unless set)")
	flag.BoolVar(&o.demo, "demo", false, "run the scripted demo: failover, restart, rolling restart, then check every acknowledged write")
	flag.IntVar(&o.nodes, "nodes", 3, "number of nodes (2 to 9)")
	flag.IntVar(&o.sessions, "sessions", 20, "with -demo: number of client sessions")
	flag.StringVar(&o.mode, "mode", "sync", "replication mode: sync or async")
	flag.BoolVar(&o.verbose, "v", false, "with -demo: print the nodes' logs as they come")
	flag.StringVar(&o.logLevel, "log-level", "", "the nodes' log level: debug, info, warn or error (default info; warn with -demo)")
	flag.StringVar(&o.membership, "membership", cmp.Or(cfg.Default, static), "how the nodes learn who is in the cluster: "+cfg.names()+func() string {
		if len(cfg.Elsewhere) == 0 {
			return ""
		}
		return ", or (run from its own module) " + strings.Join(slices.Sorted(maps.Keys(cfg.Elsewhere)), ", ")
	}())
	flag.Parse()
	if err := cfg.membership(o.membership, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 2
	}
	addrSet := false
	flag.Visit(func(f *flag.Flag) { addrSet = addrSet || f.Name == "addr" })
	if o.demo && !addrSet {
		o.addr = "127.0.0.1:0"
	}
	if o.nodes < 2 || o.nodes > 9 || (o.mode != "sync" && o.mode != "async") || o.sessions < 1 || o.sessions > 1000 {
		fmt.Fprintln(os.Stderr, "cluster: -nodes must be 2 to 9, -sessions 1 to 1000, -mode sync or async")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	events := &eventLog{}
	logs := &logSink{}
	if !o.demo {
		events.echo = os.Stdout
		logs.live = os.Stderr
	} else if o.verbose {
		logs.live = os.Stderr
	}
	c, err := startCluster(ctx, o, events, logs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		if c != nil {
			c.close()
		}
		logs.dump(os.Stderr)
		return 1
	}
	if !o.demo {
		c.printIntro(os.Stdout)
		<-ctx.Done()
		fmt.Println("\nstopping: each node drains its sessions to its buddy...")
		if err := c.close(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster:", err)
			return 1
		}
		fmt.Println("all nodes stopped")
		return 0
	}

	code := runDemo(ctx, c, o, os.Stdout)
	if err := c.close(); err != nil {
		// The data was checked already: a node slow to drain at the very
		// end is worth a warning, not a failure of the demo.
		fmt.Fprintln(os.Stderr, "cluster: warning: stopping the nodes:", err)
	}
	if code != 0 && !o.verbose {
		logs.dump(os.Stderr)
	}
	return code
}

// cluster is the running example: the nodes, the balancer and the monitor.
type cluster struct {
	sup    *supervisor
	bal    *balancer
	mon    *monitor
	events *eventLog
	srv    *http.Server
	addr   string // the balancer's address
	mode   string
	// membership is how the nodes learn who is in the cluster: static or
	// a Config.Memberships name.
	membership string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closeMu    sync.Once
	err        error
	// stopWait is how long close waits for each node to drain and exit
	// before it kills it. Default 25 s.
	stopWait time.Duration
}

// startCluster picks free ports, starts the nodes and waits until they form
// a ring, then starts the balancer and the dashboard's monitor.
func startCluster(ctx context.Context, o options, events *eventLog, logs *logSink) (*cluster, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("own executable: %w", err)
	}
	perNode := 2
	if gossips(o.membership) {
		perNode = 3 // and a gossip port
	}
	addrs, err := freeAddrs(perNode * o.nodes)
	if err != nil {
		return nil, err
	}
	peers := make([]buddy.Peer, o.nodes)
	httpAddrs := make([]string, o.nodes)
	for i := range o.nodes {
		peers[i] = buddy.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: addrs[perNode*i+1]}
		httpAddrs[i] = addrs[perNode*i]
	}
	level := o.logLevel
	switch {
	case level != "":
	case o.demo && !o.verbose:
		level = "warn"
	default:
		level = "info"
	}
	// One set of keys for every node: any node must open any node's
	// cookies and replication traffic.
	env := childEnv(os.Environ(),
		node.EnvPeers+"="+node.FormatPeers(peers),
		node.EnvClusterKey+"="+randomHex(buddy.ClusterKeySize),
		node.EnvCookieHashKey+"="+randomHex(32),
		node.EnvCookieBlockKey+"="+randomHex(32),
		node.EnvMode+"="+o.mode,
		node.EnvLogLevel+"="+level,
	)
	sup := newSupervisor(exe, env, peers, httpAddrs, events, logs)
	if gossips(o.membership) {
		var gossip []string
		for i := range o.nodes {
			gossip = append(gossip, addrs[perNode*i+2])
		}
		for i, p := range sup.procs {
			p.env = []string{envMembership + "=" + o.membership, envGossip + "=" + gossip[i], envGossipAll + "=" + strings.Join(gossip, ",")}
			p.gossipAddr = gossip[i]
		}
	}
	backends := make([]backend, o.nodes)
	for i, p := range peers {
		backends[i] = backend{id: p.ID, addr: httpAddrs[i]}
	}
	bal := newBalancer(backends, sup.up, events)
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &cluster{sup: sup, bal: bal, events: events, mode: o.mode, membership: cmp.Or(o.membership, static), cancel: cancel}
	c.mon = newMonitor(sup, bal, events, o.mode)

	errs := make([]error, o.nodes)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { errs[i] = sup.start(ctx, p.ID) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if err := c.waitConverged(ctx, 15*time.Second); err != nil {
		return c, err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return c, fmt.Errorf("balancer: %w", err)
	}
	c.addr = ln.Addr().String()
	c.mon.addr = c.addr
	mux := http.NewServeMux()
	dash := c.mon.dashboardHandler(mctx)
	mux.Handle("/dashboard", dash)
	mux.Handle("/dashboard/", dash)
	mux.Handle("/", bal)
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	c.wg.Go(func() {
		if err := c.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			events.add("error", "", "balancer: "+err.Error())
		}
	})
	c.wg.Go(func() { c.mon.run(mctx) })
	return c, nil
}

// close stops the balancer, the monitor and every node (gracefully, one
// after the other), and waits for them.
func (c *cluster) close() error {
	c.closeMu.Do(func() {
		var errs []error
		if c.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := c.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("balancer shutdown: %w", err))
			}
			cancel()
		}
		c.cancel()
		c.wg.Wait()
		wait := c.stopWait
		if wait <= 0 {
			wait = 25 * time.Second
		}
		if err := c.sup.stopAll(wait); err != nil {
			errs = append(errs, err)
		}
		c.err = errors.Join(errs...)
	})
	return c.err
}

// waitConverged waits until every node that is up sees every other node
// that is up as alive, and every node that is not running as gone, and has
// a buddy.
func (c *cluster) waitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		ok, why := c.converged(ctx, client)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not converge within %s: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *cluster) converged(ctx context.Context, client *http.Client) (bool, string) {
	infos := c.sup.infos()
	up := map[string]bool{}
	for _, pi := range infos {
		up[pi.ID] = pi.State == stateUp
	}
	for _, pi := range infos {
		if !up[pi.ID] {
			continue
		}
		st, err := fetchStats(ctx, client, pi.HTTPAddr)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Stats.Peers {
			want := p.State == buddy.Alive
			if !up[p.ID] {
				want = p.State == buddy.Dead || p.State == buddy.Left
			}
			if !want {
				return false, fmt.Sprintf("%s sees %s %s", pi.ID, p.ID, p.State)
			}
		}
		if len(up) > 1 && st.Stats.Buddy == "" {
			return false, pi.ID + " has no buddy"
		}
	}
	return true, ""
}

func fetchStats(ctx context.Context, client *http.Client, addr string) (*nodeapp.StatsInfo, error) {
	var st nodeapp.StatsInfo
	if err := getJSON(ctx, client, "http://"+addr+"/api/stats", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (c *cluster) printIntro(w io.Writer) {
	fmt.Fprintf(w, "\nTandem cluster: %d nodes, %s replication, %s membership\n\n", len(c.sup.procs), c.mode, c.membership)
	if c.membership == static {
		fmt.Fprintf(w, "  %-4s %-22s %-22s %s\n", "node", "app (HTTP)", "replication (h2c)", "pid")
	} else {
		fmt.Fprintf(w, "  %-4s %-22s %-22s %-22s %s\n", "node", "app (HTTP)", "replication (h2c)", "gossip ("+c.membership+")", "pid")
	}
	for i, pi := range c.sup.infos() {
		if g := c.sup.procs[i].gossipAddr; g != "" {
			fmt.Fprintf(w, "  %-4s %-22s %-22s %-22s %d\n", pi.ID, pi.HTTPAddr, pi.ReplAddr, g, pi.PID)
			continue
		}
		fmt.Fprintf(w, "  %-4s %-22s %-22s %d\n", pi.ID, pi.HTTPAddr, pi.ReplAddr, pi.PID)
	}
	fmt.Fprintf(w, "\n  app, through the sticky balancer:  http://%s/\n", c.addr)
	fmt.Fprintf(w, "  dashboard (kill and restart nodes): http://%s/dashboard/\n\n", c.addr)
	fmt.Fprintln(w, "Ctrl-C stops every node gracefully.")
}

// freeAddrs returns n distinct free loopback addresses.
func freeAddrs(n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// childEnv returns base without any TANDEM_ variable (a node reads its
// configuration from them), plus extra.
func childEnv(base []string, extra ...string) []string {
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		if !strings.HasPrefix(kv, "TANDEM_") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
