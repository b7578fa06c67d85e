package buddy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/faultnet"
)

var (
	testClusterKey = processClusterKey()
	testCookieKey  = core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}
)

// processClusterKey is one random cluster key per test process, handed to
// the node processes it starts through the environment. A fixed key let
// clusters of two test processes on one machine talk to each other when one
// reused a port a node of the other still dialled (same IDs, same key):
// messages of another run now fail authentication.
func processClusterKey() []byte {
	const env = "TANDEM_TEST_CLUSTER_KEY"
	if b, err := hex.DecodeString(os.Getenv(env)); err == nil && len(b) == 32 {
		return b
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	os.Setenv(env, hex.EncodeToString(b))
	return b
}

// member is one in-process node: its buddy.Node and the core.Manager it
// replicates for.
type member struct {
	node *Node
	mgr  *core.Manager
	h    http.Handler
	cfg  Config
	gone atomic.Bool
}

func (m *member) dead() bool { return m.gone.Load() }

// kill stops the member at once, as a crash would: no handover.
func (m *member) kill() {
	m.gone.Store(true) // first: a request answered while it stops is not acknowledged
	m.mgr.Close()
	m.node.Close()
}

// restart starts a fresh, empty node with the member's ID and address.
func (m *member) restart(t testing.TB) {
	t.Helper()
	cfg := m.cfg
	var err error
	for range 50 { // the old listener's port may take a moment to free
		if cfg.Listener, err = net.Listen("tcp", m.cfg.Listener.Addr().String()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	fresh := startMember(t, cfg)
	m.node, m.mgr, m.h = fresh.node, fresh.mgr, fresh.h
	m.gone.Store(false)
}

// fastTimers makes failure detection quick enough for tests.
func fastTimers(c *Config) {
	c.PingInterval = 20 * time.Millisecond
	c.SuspectAfter = 100 * time.Millisecond
	c.DeadAfter = 250 * time.Millisecond
	c.ReplicationTimeout = 2 * time.Second
}

// cluster starts n nodes named n1..nN on loopback; edit adjusts each
// node's config.
func cluster(t testing.TB, n int, edit func(*Config)) []*member {
	ms, _ := faultyCluster(t, n, edit)
	return ms
}

// faultyCluster is cluster with its fault-injecting network.
func faultyCluster(t testing.TB, n int, edit func(*Config)) ([]*member, *faultnet.Net) {
	t.Helper()
	return coreCluster(t, n, edit, nil)
}

// coreCluster is faultyCluster with coreEdit adjusting each member's
// manager config (i counts from 0).
func coreCluster(t testing.TB, n int, edit func(*Config), coreEdit func(i int, c *core.Config)) ([]*member, *faultnet.Net) {
	t.Helper()
	fn := faultnet.New()
	lns := make([]net.Listener, n)
	peers := make([]Peer, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers[i] = Peer{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String()}
		fn.Register(peers[i].ID, peers[i].Addr)
	}
	ms := make([]*member, n)
	for i := range ms {
		cfg := Config{ID: peers[i].ID, Listener: lns[i], Peers: peers, ClusterKeys: [][]byte{testClusterKey},
			ReplicationTimeout: 5 * time.Second, Dial: fn.Dialer(peers[i].ID)}
		if edit != nil {
			edit(&cfg)
		}
		var ce func(*core.Config)
		if coreEdit != nil {
			ce = func(c *core.Config) { coreEdit(i, c) }
		}
		ms[i] = startMemberCore(t, cfg, ce)
	}
	waitRing(t, ms)
	return ms, fn
}

// waitRing waits until every live member sees every other live member
// alive.
func waitRing(t testing.TB, ms []*member) {
	t.Helper()
	// Generous: under -race on two busy cores a live node can miss
	// DeadAfter (250 ms with fastTimers) and flap for a while.
	deadline := time.Now().Add(30 * time.Second)
	live := 0
	for _, m := range ms {
		if !m.dead() {
			live++
		}
	}
	for {
		ok := true
		for _, m := range ms {
			if m.dead() {
				continue
			}
			if live > 1 {
				// It sees its peers: its buddy must be the one its ring
				// names, in the sender and in Location (the view changes
				// first, the buddy right after it).
				want := m.node.view.buddyOf(m.node.ID())
				_, loc := m.node.Location()
				if b := m.node.sender.buddy().ID; b == "" || b != want || loc != want {
					ok = false
				}
			}
			for _, o := range ms {
				if o != m && !o.dead() && !m.node.alive(o.node.ID()) {
					ok = false
				}
				if o != m && o.dead() && m.node.alive(o.node.ID()) {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, m := range ms {
				if !m.dead() {
					_, loc := m.node.Location()
					t.Logf("%s sees %v; buddy %q (location %q), the ring's %q", m.node.ID(), m.node.Peers(),
						m.node.sender.buddy().ID, loc, m.node.view.buddyOf(m.node.ID()))
				}
			}
			t.Fatal("cluster did not converge")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startMember(t testing.TB, cfg Config) *member {
	t.Helper()
	return startMemberCore(t, cfg, nil)
}

// startMemberCore is startMember with edit adjusting the manager's config.
func startMemberCore(t testing.TB, cfg Config, edit func(*core.Config)) *member {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		// Debugging aid: every node's log on stderr.
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if cfg.Logger == nil {
			cfg.Logger = log
		}
	}
	node, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ccfg := core.Config{Keys: []core.KeyPair{testCookieKey}, Replicator: node, Logger: log}
	if edit != nil {
		edit(&ccfg)
	}
	mgr, err := core.NewManager(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mgr.Close()
		node.Close()
	})
	return &member{node: node, mgr: mgr, h: mgr.Middleware(http.HandlerFunc(testApp)), cfg: cfg}
}

// testApp is the application the members serve: /set?k=v, /del?k=,
// /clear, /logout, /login.
func testApp(w http.ResponseWriter, r *http.Request) {
	s := core.FromContext(r.Context())
	q := r.URL.Query()
	switch r.URL.Path {
	case "/set":
		for k := range q {
			if err := s.Set(k, q.Get(k)); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
	case "/del":
		for k := range q {
			s.Delete(k)
		}
	case "/clear":
		s.Clear()
	case "/logout":
		s.Invalidate()
	case "/login":
		s.Regenerate()
	case "/user": // log in as ?u=
		s.Regenerate()
		if err := s.SetUser(r.Context(), q.Get("u")); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
	}
	w.Header().Set("X-Session", s.ID())
	w.Header().Set("X-User", s.User())
	if r.URL.Path == "/whoami" {
		_, _ = w.Write([]byte("user=" + s.User()))
	}
}

// browser keeps one session cookie.
type browser struct {
	t      testing.TB
	cookie string
	id     string
}

func (b *browser) do(m *member, path string) *httptest.ResponseRecorder {
	b.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://app.test"+path, nil)
	if b.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "tandem", Value: b.cookie})
	}
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "tandem" {
			b.cookie = c.Value
			if c.MaxAge < 0 {
				b.cookie = ""
			}
		}
	}
	b.id = rec.Header().Get("X-Session")
	return rec
}

// sameCopy fails unless the buddy's backup of id equals the owner's session.
func sameCopy(t testing.TB, owner, buddy *member, id string) {
	t.Helper()
	want, ok := owner.mgr.Snapshot(id)
	got, from, gotOK := buddy.node.Backup(id)
	if !ok {
		if gotOK {
			t.Fatalf("%s: owner has no session but buddy holds version %d", id, got.Version)
		}
		return
	}
	if !gotOK {
		t.Fatalf("%s: buddy has no copy of version %d", id, want.Version)
	}
	if from != owner.node.ID() || got.Version != want.Version || attrs(got) != attrs(want) {
		t.Fatalf("%s: buddy holds v%d %s from %s, owner v%d %s", id, got.Version, attrs(got), from, want.Version, attrs(want))
	}
}

func attrs(c *core.Change) string {
	var parts []string
	for _, a := range c.Set {
		parts = append(parts, a.Key+"="+string(a.Value))
	}
	sort.Strings(parts)
	return fmt.Sprint(parts)
}

// alive reports whether n has peer id in its ring.
func (n *Node) alive(id string) bool { return n.view.inRing(id) }

// GoString keeps rapid's logs short: a member is its node's ID.
func (m *member) GoString() string { return m.cfg.ID }
