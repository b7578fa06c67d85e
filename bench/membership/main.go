// Command membership simulates Tandem's membership on loopback, in one
// process: N nodes on the static list's own failure detector (the bounded
// probes of buddy.Config without Membership) or on buddy/memberlist, and
// measures membership messages and bytes a second per node, and how long
// the live nodes take to agree on the ring after a join, a graceful leave
// and a kill (and to detect the kill). See bench/README.md.
//
//	cd bench/membership && go run . -sizes 10,50,100,200 -out ../results/membership
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/tandemsession/tandem/bench/internal/chart"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/memberlist"
)

var (
	verbose   = new(bool)
	traceNode = new(string)
)

// Result is one implementation at one size.
type Result struct {
	Impl        string
	N           int
	MsgsPerSec  float64 // membership messages sent a second, per node (mean)
	BytesPerSec float64 // their bytes a second, per node (mean)
	MaxMsgs     float64 // the busiest node's messages a second
	Join        float64 // seconds until every live node agrees after a join
	Leave       float64 // ... after a graceful leave
	Kill        float64 // ... after a kill
	Detect      float64 // seconds until the first node finds the killed one out
	Err         string  `json:",omitempty"`
}

func main() {
	sizes := flag.String("sizes", "10,50,100,200", "cluster sizes")
	impls := flag.String("impl", "static,memberlist", "implementations")
	window := flag.Duration("window", 10*time.Second, "how long the steady state is measured")
	out := flag.String("out", "", "directory for results.json, table.md and membership.svg")
	verbose = flag.Bool("v", false, "log the peer states while waiting for agreement")
	traceNode = flag.String("trace", "", "a node whose log goes to stderr")
	from := flag.String("from", "", "comma-separated results.json files to render instead of running")
	flag.Parse()
	var results []Result
	for _, f := range strings.Split(*from, ",") {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		must(err)
		var rs []Result
		must(json.Unmarshal(b, &rs))
		results = append(results, rs...)
	}
	for _, impl := range strings.Split(*impls, ",") {
		if *from != "" {
			break
		}
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(s)
			if err != nil {
				log.Fatal(err)
			}
			r := run(impl, n, *window)
			log.Printf("%+v", r)
			results = append(results, r)
		}
	}
	table := markdown(results)
	fmt.Print(table)
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			log.Fatal(err)
		}
		b, _ := json.MarshalIndent(results, "", "  ")
		must(os.WriteFile(filepath.Join(*out, "results.json"), b, 0o644))
		must(os.WriteFile(filepath.Join(*out, "table.md"), []byte(table), 0o644))
		must(os.WriteFile(filepath.Join(*out, "membership.svg"), svg(results), 0o644))
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// sim is one simulated cluster.
type sim struct {
	impl   string
	key    []byte
	mu     sync.Mutex
	nodes  map[string]*simNode
	disc   *discovery
	seeds  []string // memberlist: the gossip addresses of the members started
	counts map[string]*counter
}

type simNode struct {
	id   string
	node *buddy.Node
	gone bool
}

type counter struct{ msgs, bytes atomic.Uint64 }

func run(impl string, n int, window time.Duration) (r Result) {
	r = Result{Impl: impl, N: n}
	s := &sim{impl: impl, key: make([]byte, 32), nodes: map[string]*simNode{}, disc: &discovery{}, counts: map[string]*counter{}}
	_, _ = rand.Read(s.key)
	defer s.closeAll()
	ids := make([]string, n+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%03d", i)
	}
	// memberlist: the first, then the others join through it.
	if impl == "memberlist" {
		if err := s.start(ids[0]); err != nil {
			r.Err = err.Error()
			return r
		}
	}
	// One after the other, as a deployment scales up: a node's first round
	// pings the ones before it.
	for _, id := range ids[:n] {
		if impl == "memberlist" && id == ids[0] {
			continue
		}
		if err := s.start(id); err != nil {
			r.Err = err.Error()
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := s.agree(ids[:n], nil, 5*time.Minute); !ok {
		r.Err = "the cluster did not form"
		return r
	}
	time.Sleep(2 * time.Second)
	before := s.snapshot()
	t0 := time.Now()
	time.Sleep(window)
	after := s.snapshot()
	secs := time.Since(t0).Seconds()
	var msgs, bytes, most float64
	for id, b := range before {
		dm := float64(after[id][0]-b[0]) / secs
		msgs += dm
		bytes += float64(after[id][1]-b[1]) / secs
		most = max(most, dm)
	}
	r.MsgsPerSec, r.BytesPerSec, r.MaxMsgs = msgs/float64(len(before)), bytes/float64(len(before)), most

	// A join.
	start := time.Now()
	if err := s.start(ids[n]); err != nil {
		r.Err = err.Error()
		return r
	}
	if _, ok := s.agree(ids, nil, 2*time.Minute); !ok {
		r.Err = "no agreement after the join"
		return r
	}
	r.Join = time.Since(start).Seconds()
	// A graceful leave (not the memberlist seed).
	leaver := ids[n/2]
	start = time.Now()
	s.leave(leaver)
	if _, ok := s.agree(ids, []string{leaver}, 2*time.Minute); !ok {
		r.Err = "no agreement after the leave"
		return r
	}
	r.Leave = time.Since(start).Seconds()
	// A kill.
	victim := ids[n/2+1]
	start = time.Now()
	s.kill(victim)
	detect, ok := s.agree(ids, []string{leaver, victim}, 2*time.Minute)
	if !ok {
		r.Err = "no agreement after the kill"
		return r
	}
	r.Kill, r.Detect = time.Since(start).Seconds(), detect.Sub(start).Seconds()
	return r
}

// start starts node id.
func (s *sim) start(id string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := buddy.Config{ID: id, Listener: ln, ClusterKeys: [][]byte{s.key}}
	if *traceNode == id {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := &counter{}
	switch s.impl {
	case "static":
		s.disc.add(buddy.Peer{ID: id, Addr: ln.Addr().String()})
		cfg.Discovery, cfg.DiscoveryInterval = s.disc, time.Second
	case "memberlist":
		// Join through three members started before (a deployment's
		// seed list; one seed alone is slow to push its state to 200).
		s.mu.Lock()
		join := slices.Clone(s.seeds[max(0, len(s.seeds)-3):])
		s.mu.Unlock()
		mem, err := memberlist.New(memberlist.Config{BindAddr: "127.0.0.1:0", Join: join, ClusterKey: s.key, Tune: func(mc *ml.Config) {
			nt, err := ml.NewNetTransport(&ml.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: 0, Logger: mc.Logger})
			if err != nil {
				log.Fatalf("memberlist transport: %v", err)
			}
			mc.Transport = &countingTransport{NetTransport: nt, c: c}
		}})
		if err != nil {
			return err
		}
		cfg.Membership = mem
		defer func() {
			s.mu.Lock()
			if a := mem.Addr(); a != "" {
				s.seeds = append(s.seeds, a)
			}
			s.mu.Unlock()
		}()
	}
	node, err := buddy.New(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.nodes[id] = &simNode{id: id, node: node}
	s.counts[id] = c
	s.mu.Unlock()
	return nil
}

func (s *sim) leave(id string) {
	s.mu.Lock()
	sn := s.nodes[id]
	sn.gone = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = sn.node.Shutdown(ctx)
	if s.impl == "static" {
		s.disc.remove(id)
	}
}

func (s *sim) kill(id string) {
	s.mu.Lock()
	sn := s.nodes[id]
	sn.gone = true
	s.mu.Unlock()
	_ = sn.node.Close()
}

func (s *sim) closeAll() {
	s.mu.Lock()
	nodes := make([]*simNode, 0, len(s.nodes))
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { _ = n.node.Close() })
	}
	wg.Wait()
}

// snapshot returns every live node's membership messages and bytes sent.
func (s *sim) snapshot() map[string][2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][2]uint64{}
	for id, n := range s.nodes {
		if n.gone {
			continue
		}
		if s.impl == "static" {
			st := n.node.Stats()
			out[id] = [2]uint64{st.MembershipMessages, st.MembershipBytes}
		} else {
			c := s.counts[id]
			out[id] = [2]uint64{c.msgs.Load(), c.bytes.Load()}
		}
	}
	return out
}

// agree waits until every live node among ids has exactly the live ones
// (ids but out) in its ring; it returns when the first node had all of
// out out of its ring, and whether they agreed within limit.
func (s *sim) agree(ids, out []string, limit time.Duration) (first time.Time, ok bool) {
	deadline := time.Now().Add(limit)
	lastLog := time.Now()
	for time.Now().Before(deadline) {
		s.mu.Lock()
		var live []*simNode
		for _, id := range ids {
			if n, ok := s.nodes[id]; ok && !n.gone {
				live = append(live, n)
			}
		}
		s.mu.Unlock()
		all := true
		for _, n := range live {
			inRing := map[string]bool{}
			for _, p := range n.node.Peers() {
				if p.State == buddy.Alive || p.State == buddy.Suspect {
					inRing[p.ID] = true
				}
			}
			gotOut := true
			for _, o := range out {
				if inRing[o] {
					gotOut = false
				}
			}
			if gotOut && first.IsZero() {
				first = time.Now()
			}
			want := len(live) - 1
			if !gotOut || len(inRing) != want {
				all = false
				continue
			}
			for _, m := range live {
				if m != n && !inRing[m.id] {
					all = false
				}
			}
		}
		if all {
			return first, true
		}
		if *verbose && time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			states := map[buddy.State]int{}
			for _, n := range live {
				for _, p := range n.node.Peers() {
					states[p.State]++
				}
			}
			log.Printf("%s, %d live nodes: peer states seen %v", s.impl, len(live), states)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return first, false
}

// discovery is the static cluster's shared peer list.
type discovery struct {
	mu    sync.Mutex
	peers []buddy.Peer
}

func (d *discovery) Peers(context.Context) ([]buddy.Peer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.peers), nil
}

func (d *discovery) add(p buddy.Peer) {
	d.mu.Lock()
	d.peers = append(d.peers, p)
	d.mu.Unlock()
}

func (d *discovery) remove(id string) {
	d.mu.Lock()
	d.peers = slices.DeleteFunc(d.peers, func(p buddy.Peer) bool { return p.ID == id })
	d.mu.Unlock()
}

// countingTransport counts what memberlist sends: every packet and every
// stream opened as a message, and their bytes.
type countingTransport struct {
	*ml.NetTransport
	c *counter
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.c.msgs.Add(1)
	t.c.bytes.Add(uint64(len(b)))
	return t.NetTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a ml.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *countingTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	conn, err := t.NetTransport.DialTimeout(addr, d)
	if err != nil {
		return nil, err
	}
	t.c.msgs.Add(1)
	return &countingConn{Conn: conn, c: t.c}, nil
}

func (t *countingTransport) DialAddressTimeout(a ml.Address, d time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, d)
}

type countingConn struct {
	net.Conn
	c *counter
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.c.bytes.Add(uint64(len(b)))
	return c.Conn.Write(b)
}

// allToAll is the figure for today's every-node-pings-every-peer detector:
// 4·(N-1) pings a second, each of pingBytes (request and reply).
func allToAll(n int, pingBytes float64) (msgs, bytes float64) {
	m := 4 * float64(n-1)
	return m, m * pingBytes
}

func markdown(rs []Result) string {
	var b strings.Builder
	b.WriteString("| membership | N | msgs/s per node | bytes/s per node | busiest node msgs/s | join agreed (s) | leave agreed (s) | kill detected (s) | kill agreed (s) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	pingBytes := 0.0
	for _, r := range rs {
		if r.Impl == "static" && r.MsgsPerSec > 0 {
			pingBytes = r.BytesPerSec / r.MsgsPerSec
		}
	}
	for _, r := range rs {
		if r.Err != "" {
			fmt.Fprintf(&b, "| %s | %d | %s |||||||\n", r.Impl, r.N, r.Err)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.0f | %.1f | %.2f | %.2f | %.2f | %.2f |\n", r.Impl, r.N, r.MsgsPerSec, r.BytesPerSec, r.MaxMsgs, r.Join, r.Leave, r.Detect, r.Kill)
	}
	seen := map[int]bool{}
	for _, r := range rs {
		if seen[r.N] {
			continue
		}
		seen[r.N] = true
		m, by := allToAll(r.N, pingBytes)
		fmt.Fprintf(&b, "| all-to-all (computed) | %d | %.0f | %.0f | %.0f | | | | |\n", r.N, m, by, m)
	}
	return b.String()
}

func svg(rs []Result) []byte {
	colors := map[string]string{"static": "#1f77b4", "memberlist": "#2ca02c"}
	var series []chart.Series
	var xs []float64
	for _, impl := range []string{"static", "memberlist"} {
		s := chart.Series{Name: impl, Color: colors[impl]}
		for _, r := range rs {
			if r.Impl == impl && r.Err == "" {
				s.X = append(s.X, float64(r.N))
				s.Y = append(s.Y, r.MsgsPerSec)
				s.Labels = append(s.Labels, fmt.Sprintf("%.0f", r.MsgsPerSec))
				xs = append(xs, float64(r.N))
			}
		}
		if len(s.X) > 0 {
			series = append(series, s)
		}
	}
	slices.Sort(xs)
	xs = slices.Compact(xs)
	a := chart.Series{Name: "all-to-all, 4·(N-1) (computed)", Color: "#d62728", Dash: "6,4"}
	for _, x := range xs {
		m, _ := allToAll(int(x), 0)
		a.X, a.Y = append(a.X, x), append(a.Y, m)
		a.Labels = append(a.Labels, fmt.Sprintf("%.0f", m))
	}
	series = append(series, a)
	lc := chart.LineChart{
		Title:    "Membership messages a second per node",
		Subtitle: "one process on loopback, 2 shared cores; static: the bounded probes (PingInterval 250 ms); memberlist: DefaultLANConfig",
		XLabel:   "nodes", YLabel: "messages/s per node",
		XTicks: xs, YTicks: []float64{1, 10, 100, 1000},
		XFormat: func(v float64) string { return strconv.Itoa(int(v)) },
		YFormat: func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) },
		Series:  series,
	}
	return lc.SVG()
}
