package core

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestSetGetAcrossRequests(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			if err := s.Set("user", map[string]any{"name": "ada", "n": 3}); err != nil {
				t.Error(err)
			}
		case "/get":
			type user struct {
				Name string
				N    int
			}
			u, ok, err := Get[user](s, "user")
			if err != nil || !ok {
				t.Errorf("Get: ok=%v err=%v", ok, err)
			}
			fmt.Fprintf(w, "%s %d new=%v", u.Name, u.N, s.IsNew())
		}
	})
	rec := c.do("/set")
	ck := setCookie(rec, "tandem")
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge != 0 {
		t.Fatalf("cookie = %+v", ck)
	}
	if got := c.do("/get").Body.String(); got != "ada 3 new=false" {
		t.Fatalf("body = %q", got)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d", m.Len())
	}
}

func TestReadOnlyRequestSendsNoCookieAndKeepsVersion(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/set" {
			_ = s.Set("k", 1)
			return
		}
		var v int
		_, _ = s.Get("k", &v)
	})
	c.do("/set")
	rec := c.do("/read")
	if setCookie(rec, "tandem") != nil {
		t.Fatal("read-only request re-sent the cookie")
	}
	snap, ok := m.Snapshot(mustOnlyID(t, m))
	if !ok || snap.Version != 1 {
		t.Fatalf("version after read = %d, want 1", snap.Version)
	}
}

func mustOnlyID(t *testing.T, m *Manager) string {
	t.Helper()
	var ids []string
	m.Snapshots(func(c *Change) bool { ids = append(ids, c.ID); return true })
	if len(ids) != 1 {
		t.Fatalf("sessions = %v, want one", ids)
	}
	return ids[0]
}

// Two requests of one session that run at the same time and set different
// keys both keep their writes.
func TestConcurrentRequestsMergePerAttribute(t *testing.T) {
	m, _ := newManager(t, nil)
	var gate sync.WaitGroup
	gate.Add(2)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/init":
			_ = s.Set("base", "x")
		default:
			// Both requests have loaded the session before either commits.
			gate.Done()
			gate.Wait()
			_ = s.Set(strings.TrimPrefix(r.URL.Path, "/"), r.URL.Path)
		}
	})
	c.do("/init")
	var wg sync.WaitGroup
	for _, p := range []string{"/a", "/b"} {
		c2 := *c
		wg.Go(func() { c2.do(p) })
	}
	wg.Wait()
	snap, _ := m.Snapshot(mustOnlyID(t, m))
	got := map[string]string{}
	for _, a := range snap.Set {
		got[a.Key] = string(a.Value)
	}
	if got["a"] != `"/a"` || got["b"] != `"/b"` || got["base"] != `"x"` || snap.Version != 3 {
		t.Fatalf("merged session = %v version %d", got, snap.Version)
	}
}

// On the same key, the request that commits last wins.
func TestConcurrentSameKeyLastCommitWins(t *testing.T) {
	m, _ := newManager(t, nil)
	first := make(chan struct{})
	loaded := make(chan struct{}, 2)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/init":
			_ = s.Set("k", "init")
		case "/early":
			loaded <- struct{}{}
			_ = s.Set("k", "early")
		case "/late":
			loaded <- struct{}{}
			<-first // commit after /early did
			_ = s.Set("k", "late")
		}
	})
	c.do("/init")
	var wg sync.WaitGroup
	late := *c
	wg.Go(func() { late.do("/late") })
	early := *c
	early.do("/early")
	close(first)
	wg.Wait()
	var v string
	snap, _ := m.Snapshot(mustOnlyID(t, m))
	_ = JSONCodec{}.Unmarshal(snap.Set[0].Value, &v)
	if v != "late" {
		t.Fatalf("k = %q, want the later commit", v)
	}
}

func TestRegenerateKillsOldID(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.RegenerateGrace = -1 })
	var ids []string
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			_ = s.Set("cart", []string{"apple"})
		case "/login":
			s.Regenerate()
			_ = s.Set("user", "ada")
		}
		ids = append(ids, s.ID())
		var cart []string
		ok, _ := s.Get("cart", &cart)
		fmt.Fprint(w, ok, cart)
	})
	c.do("/set")
	oldCookie := c.cookie
	if got := c.do("/login").Body.String(); got != "true [apple]" {
		t.Fatalf("login body %q", got)
	}
	if ids[0] == ids[1] || c.cookie == oldCookie {
		t.Fatal("ID not regenerated")
	}
	if got := c.do("/").Body.String(); got != "true [apple]" {
		t.Fatalf("after login: %q", got)
	}
	old := *c
	old.cookie = oldCookie
	if got := old.do("/").Body.String(); got != "false []" {
		t.Fatalf("old ID still loads: %q", got)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1", m.Len())
	}
}

func TestInvalidateClearsCookieAndData(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			_ = s.Set("user", "ada")
		case "/logout":
			s.Invalidate()
		}
	})
	c.do("/set")
	old := c.cookie
	rec := c.do("/logout")
	ck := setCookie(rec, "tandem")
	if ck == nil || ck.MaxAge != -1 || ck.Value != "" {
		t.Fatalf("logout cookie = %+v", ck)
	}
	if m.Len() != 0 {
		t.Fatalf("Len = %d after logout", m.Len())
	}
	replay := *c
	replay.cookie = old
	var sawNew bool
	replay.h = m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawNew = FromContext(r.Context()).IsNew()
	}))
	replay.do("/")
	if !sawNew {
		t.Fatal("old cookie still loads a session")
	}
}

func TestInvalidateThenSetStartsFreshSession(t *testing.T) {
	m, _ := newManager(t, nil)
	var ids []string
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/logout":
			s.Invalidate()
			_ = s.AddFlash("bye")
		case "/set":
			_ = s.Set("user", "ada")
		default:
			fmt.Fprint(w, s.Has("user"), s.Flashes())
		}
		ids = append(ids, s.ID())
	})
	c.do("/set")
	c.do("/logout")
	if ids[0] == ids[1] {
		t.Fatal("logout kept the ID")
	}
	if got := c.do("/").Body.String(); got != "false [bye]" {
		t.Fatalf("after logout: %q", got)
	}
}

func TestFlashesPopInOrder(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/add" {
			_ = s.AddFlash("one")
			_ = s.AddFlash("two")
			_ = s.Set("k", 1)
			return
		}
		fmt.Fprint(w, s.Flashes(), s.Keys())
	})
	c.do("/add")
	if got := c.do("/").Body.String(); got != "[one two] [k]" {
		t.Fatalf("first read %q", got)
	}
	if got := c.do("/").Body.String(); got != "[] [k]" {
		t.Fatalf("second read %q", got)
	}
}

func TestDeleteClearKeys(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			_ = s.Set("a", 1)
			_ = s.Set("b", 2)
			_ = s.Set("c", 3)
		case "/del":
			s.Delete("b")
		case "/clear":
			s.Clear()
			_ = s.Set("z", 26)
		}
		fmt.Fprint(w, s.Keys())
	})
	for _, step := range []struct{ path, want string }{
		{"/set", "[a b c]"}, {"/", "[a b c]"}, {"/del", "[a c]"}, {"/", "[a c]"}, {"/clear", "[z]"}, {"/", "[z]"},
	} {
		if got := c.do(step.path).Body.String(); got != step.want {
			t.Fatalf("%s: keys %s, want %s", step.path, got, step.want)
		}
	}
}

func TestSetRejectsUnencodableValueAtOnce(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		err := s.Set("ch", make(chan int))
		fmt.Fprint(w, err != nil, s.Has("ch"))
		if !errors.Is(s.Set("", 1), ErrInvalidKey) || !errors.Is(s.Set("\x00x", 1), ErrInvalidKey) {
			t.Error("invalid keys accepted")
		}
	})
	if got := c.do("/").Body.String(); got != "true false" {
		t.Fatalf("got %q", got)
	}
}

func TestGobCodec(t *testing.T) {
	type point struct{ X, Y int }
	m, _ := newManager(t, func(c *Config) { c.Codec = GobCodec{} })
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/set" {
			_ = s.Set("p", point{1, 2})
			return
		}
		p, _, err := Get[point](s, "p")
		fmt.Fprint(w, p, err)
	})
	c.do("/set")
	if got := c.do("/").Body.String(); got != "{1 2} <nil>" {
		t.Fatalf("got %q", got)
	}
}
