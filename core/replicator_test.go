package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// fakeReplicator records changes and touches; fail makes acks fail.
type fakeReplicator struct {
	mu      sync.Mutex
	changes []Change
	touches []string
	fail    error
	loc     Route
}

type ackFunc func(context.Context) error

func (f ackFunc) Wait(ctx context.Context) error { return f(ctx) }

func (f *fakeReplicator) Replicate(c *Change) Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, *c)
	err := f.fail
	return ackFunc(func(context.Context) error { return err })
}

func (f *fakeReplicator) Touch(id string, _ time.Time) {
	f.mu.Lock()
	f.touches = append(f.touches, id)
	f.mu.Unlock()
}

func (f *fakeReplicator) Location() (string, string) { return f.loc.Owner, f.loc.Backup }

func (f *fakeReplicator) take() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.changes
	f.changes = nil
	return c
}

func TestReplicatorSeesEveryChange(t *testing.T) {
	rep := &fakeReplicator{loc: Route{Owner: "n1", Backup: "n2"}}
	m, clk := newManager(t, func(c *Config) { c.Replicator = rep; c.IdleTimeout = time.Minute; c.SweepInterval = time.Second })
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			_ = s.Set("a", 1)
			_ = s.Set("b", 2)
		case "/del":
			s.Delete("a")
			_ = s.Set("c", 3)
		case "/clear":
			s.Clear()
		case "/regen":
			s.Regenerate()
		case "/logout":
			s.Invalidate()
		}
	})
	c.do("/set")
	c.do("/")
	c.do("/del")
	c.do("/clear")
	c.do("/regen")
	ch := rep.take()
	if len(ch) != 4 {
		t.Fatalf("%d changes: %+v", len(ch), ch)
	}
	first, del, clr, regen := ch[0], ch[1], ch[2], ch[3]
	if !first.Full || first.Version != 1 || len(first.Set) != 2 {
		t.Fatalf("create: %+v", first)
	}
	if del.Full || del.Base != 1 || del.Version != 2 || fmt.Sprint(del.Deleted) != "[a]" || del.Set[0].Key != "c" {
		t.Fatalf("delta: %+v", del)
	}
	if !clr.Clear || clr.Base != 2 || clr.Version != 3 {
		t.Fatalf("clear: %+v", clr)
	}
	if !regen.Full || regen.PrevID != first.ID || regen.ID == first.ID || regen.Version != 4 {
		t.Fatalf("regenerate: %+v", regen)
	}
	if len(rep.touches) != 1 || rep.touches[0] != first.ID {
		t.Fatalf("touches %v", rep.touches)
	}
	c.do("/logout")
	if ch := rep.take(); len(ch) != 1 || !ch[0].Removed || ch[0].ID != regen.ID {
		t.Fatalf("logout: %+v", ch)
	}
	// Expiry propagates as a removal.
	c.do("/set")
	rep.take()
	clk.Add(2 * time.Minute)
	m.Sweep()
	if ch := rep.take(); len(ch) != 1 || !ch[0].Removed {
		t.Fatalf("expiry: %+v", ch)
	}
}

func TestCookieNamesOwnerAndBackup(t *testing.T) {
	rep := &fakeReplicator{loc: Route{Owner: "n1", Backup: "n2"}}
	m, _ := newManager(t, func(c *Config) { c.Replicator = rep })
	var route Route
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		route = s.route
		_ = s.Set("k", 1)
	})
	c.do("/")
	c.do("/")
	if !route.sameCookie(Route{Owner: "n1", Backup: "n2", Epoch: 1}) {
		t.Fatalf("route %+v", route)
	}
	rep.mu.Lock()
	rep.loc.Backup = "n3" // the buddy changed: the cookie follows
	rep.mu.Unlock()
	if setCookie(c.do("/"), "tandem") == nil {
		t.Fatal("cookie not re-issued after the backup moved")
	}
	c.do("/")
	if !route.sameCookie(Route{Owner: "n1", Backup: "n3", Epoch: 1}) {
		t.Fatalf("route %+v", route)
	}
}

func TestReplicationFailureAnswers503(t *testing.T) {
	rep := &fakeReplicator{fail: fmt.Errorf("buddy down: %w", ErrReplication)}
	m, _ := newManager(t, func(c *Config) { c.Replicator = rep })
	c, _ := sessionClient(t, m)
	rec := c.do("/set")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("code %d", rec.Code)
	}
}

// A session another node took over while a request still held it (the
// handover's wait for it ran out): the request's changes are refused (503),
// not silently dropped.
func TestCommitAfterSurrenderFailsMoved(t *testing.T) {
	m, _ := newManager(t, nil)
	var id string
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/race" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if c, _ := m.Surrender(ctx, s.ID()); c == nil {
				t.Error("nothing to surrender")
			}
		}
		_ = s.Set("k", r.URL.Path)
		id = s.ID()
	})
	c.do("/init")
	if rec := c.do("/race"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("code %d, want 503", rec.Code)
	}
	if _, ok := m.Snapshot(id); ok {
		t.Fatal("the surrendered session is still here")
	}
}

func TestDrainRefusesNewSessionsOnly(t *testing.T) {
	m, _ := newManager(t, nil)
	old, _ := sessionClient(t, m)
	old.do("/set")
	m.Drain()
	if rec := old.do("/set"); rec.Code != http.StatusOK {
		t.Fatalf("existing session refused while draining: %d", rec.Code)
	}
	fresh, _ := sessionClient(t, m)
	if rec := fresh.do("/set"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("new session while draining: %d, want 503", rec.Code)
	}
}

// gatedReplicator's acknowledgements wait until the gate open when the
// change was replicated is closed, and then report err.
type gatedReplicator struct {
	mu   sync.Mutex
	gate chan struct{}
	err  error
}

func (g *gatedReplicator) Replicate(*Change) Ack {
	g.mu.Lock()
	gate, err := g.gate, g.err
	g.mu.Unlock()
	return ackFunc(func(ctx context.Context) error {
		select {
		case <-gate:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// next makes later changes wait for a new gate, failing with err, and
// returns it.
func (g *gatedReplicator) next(err error) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.err = make(chan struct{}), err
	return g.gate
}

// A request that reads what a concurrent commit wrote answers only once
// that commit is replicated, and fails with it: no response shows what is
// not on two nodes yet.
func TestReadWaitsForTheCommitItSaw(t *testing.T) {
	for _, fail := range []bool{false, true} {
		g := &gatedReplicator{}
		close(g.next(nil)) // the first write goes through at once
		m, _ := newManager(t, func(c *Config) { c.Replicator = g })
		var mu sync.Mutex
		var last string
		c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			if r.URL.Path == "/set" {
				_ = s.Set("k", r.URL.Query().Get("v"))
				return
			}
			v, _, _ := Get[string](s, "k")
			mu.Lock()
			last = v
			mu.Unlock()
		})
		c.do("/set?v=1")
		var err error
		if fail {
			err = ErrReplication
		}
		gate := g.next(err)
		writer := *c
		wrote := make(chan int)
		go func() { wrote <- writer.do("/set?v=2").Code }()
		var read chan int
		for read == nil { // until a read sees v=2, not replicated yet
			rd := *c
			done := make(chan int, 1)
			go func() { done <- rd.do("/").Code }()
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			saw := last
			mu.Unlock()
			if saw != "2" {
				<-done // it read v=1 before the write landed: again
				continue
			}
			select {
			case code := <-done:
				t.Fatalf("fail=%v: a read of an unreplicated write answered %d at once", fail, code)
			default:
			}
			read = done
		}
		close(gate)
		w, r := <-wrote, <-read
		want := http.StatusOK
		if fail {
			want = http.StatusServiceUnavailable
		}
		if w != want || r != want {
			t.Fatalf("fail=%v: write answered %d, read %d, want %d", fail, w, r, want)
		}
	}
}
