package memberlist

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	ml "github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	clusterKey = bytes.Repeat([]byte("k"), 32)
	cookieKey  = core.KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}
)

// fast shortens memberlist's timers for loopback tests.
func fast(c *ml.Config) {
	c.ProbeInterval, c.ProbeTimeout = 100*time.Millisecond, 50*time.Millisecond
	c.GossipInterval, c.SuspicionMult = 20*time.Millisecond, 2
	c.PushPullInterval = time.Second
}

type node struct {
	n  *buddy.Node
	m  *core.Manager
	ml *Membership
}

func start(t *testing.T, id string, join []string) *node {
	t.Helper()
	mem, err := New(Config{Preset: Local, BindAddr: "127.0.0.1:0", Join: join, ClusterKey: clusterKey, Tune: fast})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := buddy.New(buddy.Config{ID: id, Listener: ln, ClusterKeys: [][]byte{clusterKey}, Membership: mem})
	if err != nil {
		t.Fatal(err)
	}
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{cookieKey}, Replicator: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); n.Close() })
	return &node{n, m, mem}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func state(n *node, id string) buddy.State {
	for _, p := range n.n.Peers() {
		if p.ID == id {
			return p.State
		}
	}
	return buddy.Unknown
}

// TestClusterOnMemberlist: three nodes join through the first; a write is
// replicated to the owner's buddy; a killed node is found dead and the
// ring goes on without it; a drained one leaves.
func TestClusterOnMemberlist(t *testing.T) {
	a := start(t, "n1", nil)
	b := start(t, "n2", []string{a.ml.Addr()})
	c := start(t, "n3", []string{a.ml.Addr()})
	all := []*node{a, b, c}
	waitFor(t, "every node sees the others alive", func() bool {
		for _, x := range all {
			for _, y := range all {
				if x != y && state(x, y.n.ID()) != buddy.Alive {
					return false
				}
			}
		}
		return a.n.Ready() && b.n.Ready() && c.n.Ready()
	})
	if got := a.n.Stats().Buddy; got != "n2" {
		t.Fatalf("n1's buddy is %q, want n2", got)
	}
	app := a.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = core.FromContext(r.Context()).Set("cart", "tea")
	}))
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != 200 || b.n.Stats().Backups != 1 {
		t.Fatalf("write: %d, backups on n2: %d", rec.Code, b.n.Stats().Backups)
	}

	// Kill n2 (no leave): found dead, n1 backs up on n3.
	b.m.Close()
	b.n.Close()
	waitFor(t, "n2 found dead and n1's sessions on n3", func() bool {
		return state(a, "n2") == buddy.Dead && state(c, "n2") == buddy.Dead && a.n.Stats().Buddy == "n3" && c.n.Stats().Backups == 1
	})

	// Drain n3: it leaves.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3 left", func() bool {
		return state(a, "n3") == buddy.Left && a.n.Stats().Buddy == ""
	})
}

func TestForeignKeyDoesNotJoin(t *testing.T) {
	a := start(t, "n1", nil)
	other := bytes.Repeat([]byte("x"), 32)
	mem, err := New(Config{Preset: Local, BindAddr: "127.0.0.1:0", Join: []string{a.ml.Addr()}, ClusterKey: other, Tune: fast})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = mem.Join(ctx, buddy.Member{Peer: buddy.Peer{ID: "evil", Addr: "127.0.0.1:1"}}, func() {})
	defer mem.Close()
	if err == nil {
		t.Fatal("a member with another cluster key joined")
	}
	if got := len(a.n.Peers()); got != 0 {
		t.Fatalf("n1 knows %d peers", got)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	md := meta{Addr: "10.0.0.1:7946", Zone: "eu-1a", Incarnation: 1 << 62, Fingerprint: 42}
	got, err := decodeMeta(encodeMeta(md))
	if err != nil || got != md {
		t.Fatalf("%+v %v", got, err)
	}
	for _, b := range [][]byte{nil, {2}, {1, 5, 'a'}, encodeMeta(md)[:5], encodeMeta(meta{})} {
		if _, err := decodeMeta(b); err == nil {
			t.Errorf("%q decoded", b)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []Config{{BindAddr: "127.0.0.1:0"}, {ClusterKey: clusterKey}, {BindAddr: "127.0.0.1:0", ClusterKey: clusterKey, Preset: 9}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestLevelWriter: memberlist's "[LEVEL] text" lines become records at
// their level, without the prefix ([INFO] included).
func TestLevelWriter(t *testing.T) {
	var got []string
	h := &recordHandler{out: &got}
	w := &levelWriter{log: slog.New(h)}
	if _, err := w.Write([]byte("[DEBUG] memberlist: a\n[INFO] memberlist: b\n[WARN] memberlist: c\n[ERR] memberlist: d\nplain\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{"DEBUG memberlist: a", "INFO memberlist: b", "WARN memberlist: c", "ERROR memberlist: d", "INFO plain"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// recordHandler keeps "LEVEL message" of every record.
type recordHandler struct{ out *[]string }

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	*h.out = append(*h.out, r.Level.String()+" "+r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }
