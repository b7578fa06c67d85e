package buddy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/internal/memstat"
)

// pcluster is a cluster of nodes running as child processes on loopback
// (see runChildNode), for the tests that attack or kill real processes.
type pcluster struct {
	t     *testing.T
	ids   []string
	http  map[string]string
	repl  map[string]string
	env   map[string][]string // extra environment per node
	peers map[string]string   // a node's peer list, when not the real addresses
	procs map[string]*proc
	hc    *http.Client
}

func newPCluster(t *testing.T, n int) *pcluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := &pcluster{t: t, http: map[string]string{}, repl: map[string]string{}, env: map[string][]string{},
		peers: map[string]string{}, procs: map[string]*proc{}, hc: &http.Client{Timeout: 10 * time.Second}}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		c.http[id], c.repl[id] = freeAddr(t), freeAddr(t)
	}
	t.Cleanup(c.hc.CloseIdleConnections)
	return c
}

// peerList is the peer list id starts with: every node at its real address,
// but for the overrides in over (id -> address).
func (c *pcluster) peerList(over map[string]string) string {
	var parts []string
	for _, id := range c.ids {
		addr := c.repl[id]
		if a, ok := over[id]; ok {
			addr = a
		}
		parts = append(parts, id+"="+addr)
	}
	return strings.Join(parts, ",")
}

// start starts node id (again) and returns its process.
func (c *pcluster) start(id string) *proc {
	c.t.Helper()
	peers := c.peers[id]
	if peers == "" {
		peers = c.peerList(nil)
	}
	var p *proc
	for attempt := 0; ; attempt++ {
		p = startProcMaybe(c.t, id, c.http[id], c.repl[id], peers, c.env[id]...)
		if p != nil || attempt == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond) // the old process's ports may take a moment to free
	}
	if p == nil {
		c.t.Fatalf("node %s did not start", id)
	}
	c.procs[id] = p
	return p
}

// startAll starts every node and waits until each has a buddy.
func (c *pcluster) startAll() {
	c.t.Helper()
	for _, id := range c.ids {
		c.start(id)
	}
	c.waitFormed(c.ids...)
}

// stats returns node id's /stats; ok is false when it does not answer.
func (c *pcluster) stats(id string, gc bool) (childStats, bool) {
	u := "http://" + c.http[id] + "/stats"
	if gc {
		u += "?gc=1"
	}
	var st childStats
	resp, err := c.hc.Get(u)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil
}

func (c *pcluster) mustStats(id string) childStats {
	c.t.Helper()
	st, ok := c.stats(id, false)
	if !ok {
		c.t.Fatalf("%s: no stats", id)
	}
	return st
}

// waitFor polls cond every 50 ms for up to 30 s, and fails the test with
// what when it never holds.
func (c *pcluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFormed waits until each of ids sees every other of ids alive and has
// a buddy.
func (c *pcluster) waitFormed(ids ...string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%v to see each other", ids), func() bool {
		for _, id := range ids {
			st, ok := c.stats(id, false)
			if !ok || st.Node.Buddy == "" {
				return false
			}
			for _, p := range st.Node.Peers {
				if p.ID != id && contains(ids, p.ID) && p.State != Alive {
					return false
				}
			}
		}
		return true
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// rss is a process's resident set in bytes, from /proc.
func rss(t *testing.T, p *proc) int64 {
	t.Helper()
	v := memstat.RSS(p.cmd.Process.Pid)
	if v == 0 {
		t.Skip("no /proc")
	}
	return v
}

// visitor is a browser of the process cluster: it keeps the session cookie
// and sends it to whichever node it asks.
type visitor struct {
	c      *pcluster
	cookie string
}

// do sends GET path to node id and returns the status, the body and the
// session ID the app saw (X-Session).
func (v *visitor) do(id, path string) (int, string, string) {
	v.c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+v.c.http[id]+path, nil)
	if v.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "tandem", Value: v.cookie})
	}
	resp, err := v.c.hc.Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "tandem" {
			if ck.MaxAge < 0 {
				v.cookie = ""
			} else {
				v.cookie = ck.Value
			}
		}
	}
	return resp.StatusCode, string(body), resp.Header.Get("X-Session")
}

// must sends GET path to node id and fails the test unless it answers 200.
func (v *visitor) must(id, path string) (body, session string) {
	v.c.t.Helper()
	code, body, sid := v.do(id, path)
	if code != http.StatusOK {
		v.c.t.Fatalf("GET %s on %s: %d %s", path, id, code, body)
	}
	return body, sid
}

// read returns the session's attributes as node id serves them.
func (v *visitor) read(id string) (map[string]string, string) {
	v.c.t.Helper()
	body, sid := v.must(id, "/get")
	out := map[string]string{}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		v.c.t.Fatalf("GET /get on %s: %v (%q)", id, err, body)
	}
	return out, sid
}

// tap is an h2c reverse proxy in front of a node's replication port: it
// keeps a copy of every request body sent to the paths it records, and can
// drop the traffic (block), as a host on the network path could.
type tap struct {
	srv     *http.Server
	addr    string
	record  map[string]bool
	mu      sync.Mutex
	bodies  map[string][][]byte
	blocked atomic.Bool
	gate    atomic.Pointer[gate]
}

type gate struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newTap(t *testing.T, target string, record ...string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{addr: ln.Addr().String(), record: map[string]bool{}, bodies: map[string][][]byte{}}
	for _, p := range record {
		tp.record[p] = true
	}
	tp.openGate()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	u := &url.URL{Scheme: "http", Host: target}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler:  func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	tp.srv = &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp.blocked.Load() {
			http.Error(w, "dropped", http.StatusBadGateway)
			return
		}
		if tp.record[r.URL.Path] {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.bodies[r.URL.Path] = append(tp.bodies[r.URL.Path], body)
			tp.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		g := tp.gate.Load()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(g.ctx, cancel)
		defer stop()
		proxy.ServeHTTP(w, r.WithContext(ctx))
	})}
	go func() { _ = tp.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = tp.srv.Close()
		tr.CloseIdleConnections()
		tp.gate.Load().cancel()
	})
	return tp
}

func (tp *tap) openGate() {
	ctx, cancel := context.WithCancel(context.Background())
	tp.gate.Store(&gate{ctx, cancel})
}

// block drops all traffic, streams already open included, until unblock.
func (tp *tap) block() {
	tp.blocked.Store(true)
	tp.gate.Load().cancel()
}

func (tp *tap) unblock() {
	tp.openGate()
	tp.blocked.Store(false)
}

// recorded returns the bodies sent to path so far.
func (tp *tap) recorded(path string) [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.bodies[path]
}

// rawPost posts body to a node's replication endpoint over h2c and returns
// the status and the response body.
func rawPost(t *testing.T, addr, path string, body []byte) (int, []byte) {
	t.Helper()
	c := h2c()
	defer c.CloseIdleConnections()
	c.Timeout = 30 * time.Second
	resp, err := c.Post("http://"+addr+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// forger speaks the replication protocol as node id with the cluster key:
// what a holder of the key (a member, or whoever stole it) can send.
type forger struct {
	c      *pcluster
	id     string
	sealer *wire.Sealer
	comp   *compress.Compressor
	boots  map[string]uint64
}

func (c *pcluster) forger(id string) *forger {
	c.t.Helper()
	s, err := wire.NewSealer(id, [][]byte{testClusterKey})
	if err != nil {
		c.t.Fatal(err)
	}
	comp, err := compress.New(compress.Config{})
	if err != nil {
		c.t.Fatal(err)
	}
	return &forger{c: c, id: id, sealer: s, comp: comp, boots: map[string]uint64{}}
}

// seq returns a fresh sequence number: the clock, as nodes count.
func (f *forger) seq() uint64 { return uint64(time.Now().UnixNano()) }

// bootOf learns node to's boot nonce the way a starting node does: a ping
// sealed for no boot, which to answers with a pong that carries its boot.
func (f *forger) bootOf(to string) uint64 {
	f.c.t.Helper()
	if b, ok := f.boots[to]; ok {
		return b
	}
	return f.pong(to).Boot
}

// pong pings node to as a starting node does and returns its answer.
func (f *forger) pong(to string) wire.Ping {
	f.c.t.Helper()
	seq := f.seq()
	env := f.sealer.Seal(nil, to, wire.MsgPing, seq, 0, wire.AppendPing(nil, wire.Ping{Incarnation: 1}))
	code, body := rawPost(f.c.t, f.c.repl[to], pathPing, env)
	if code != http.StatusOK {
		f.c.t.Fatalf("hello ping to %s: %d %q", to, code, body)
	}
	h, payload, err := f.sealer.Open(nil, body, 0)
	if err != nil || h.Type != wire.MsgPong || h.Seq != seq {
		f.c.t.Fatalf("pong from %s: %+v %v", to, h, err)
	}
	p, err := wire.DecodePing(payload)
	if err != nil {
		f.c.t.Fatal(err)
	}
	f.boots[to] = p.Boot
	return p
}

// call seals payload as typ for to, posts it to path and returns the status
// and the opened reply (nil unless 200).
func (f *forger) call(to, path string, typ wire.MsgType, seq uint64, payload []byte) (int, []byte) {
	f.c.t.Helper()
	env := f.sealer.Seal(nil, to, typ, seq, f.bootOf(to), payload)
	code, body := rawPost(f.c.t, f.c.repl[to], path, env)
	if code != http.StatusOK {
		return code, body
	}
	_, out, err := f.sealer.Open(nil, body, 0)
	if err != nil {
		f.c.t.Fatalf("reply from %s: %v", to, err)
	}
	return code, out
}

// batch sends recs to to as one batch on a stream of its own, with
// sequence number seq, and returns the reply frame's status and, when 200,
// the decoded reply.
func (f *forger) batch(to string, seq uint64, recs []wire.Record) (int, wire.BatchReply) {
	f.c.t.Helper()
	return f.rawBatch(to, seq, f.comp.Encode(nil, wire.AppendBatch(nil, recs)))
}

// rawBatch is batch with the compressed payload given.
func (f *forger) rawBatch(to string, seq uint64, payload []byte) (int, wire.BatchReply) {
	f.c.t.Helper()
	env := f.sealer.Seal(nil, to, wire.MsgBatch, seq, f.bootOf(to), payload)
	c := h2c()
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://"+f.c.repl[to]+pathStream, contentType, bytes.NewReader(streamFrame(env)))
	if err != nil {
		f.c.t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	status, size, err := wire.ReadReplyHeader(br, 1<<20)
	if err != nil {
		f.c.t.Fatalf("batch reply from %s: %v", to, err)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(br, body); err != nil {
		f.c.t.Fatal(err)
	}
	if status != http.StatusOK {
		return status, wire.BatchReply{}
	}
	_, plain, err := f.sealer.Open(nil, body, 0)
	if err != nil {
		f.c.t.Fatal(err)
	}
	rep, err := wire.DecodeReply(plain, wire.DefaultLimits())
	if err != nil {
		f.c.t.Fatal(err)
	}
	return status, rep
}
