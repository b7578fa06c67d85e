package buddy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

var (
	testClusterKey = bytes.Repeat([]byte("k"), 32)
	testCookieKey  = core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}
)

// member is one in-process node: its buddy.Node and the core.Manager it
// replicates for.
type member struct {
	node *Node
	mgr  *core.Manager
	h    http.Handler
}

// cluster starts n nodes named n1..nN on loopback; edit adjusts each
// node's config.
func cluster(t testing.TB, n int, edit func(*Config)) []*member {
	t.Helper()
	lns := make([]net.Listener, n)
	peers := make([]Peer, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers[i] = Peer{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String()}
	}
	ms := make([]*member, n)
	for i := range ms {
		cfg := Config{ID: peers[i].ID, Listener: lns[i], Peers: peers, ClusterKeys: [][]byte{testClusterKey},
			ReplicationTimeout: 5 * time.Second}
		if edit != nil {
			edit(&cfg)
		}
		ms[i] = startMember(t, cfg)
	}
	return ms
}

func startMember(t testing.TB, cfg Config) *member {
	t.Helper()
	node, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := core.NewManager(core.Config{Keys: []core.KeyPair{testCookieKey}, Replicator: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mgr.Close()
		node.Close()
	})
	return &member{node: node, mgr: mgr, h: mgr.Middleware(http.HandlerFunc(testApp))}
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
	}
	w.Header().Set("X-Session", s.ID())
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
