package core

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A flood of cookie-less requests that each store something fills the node;
// it then evicts the oldest first-visit sessions, so returning users keep
// their sessions and new visitors (a login) still get one.
func TestFloodEvictsFirstVisitSessions(t *testing.T) {
	rep := &fakeReplicator{}
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxSessions = 100; c.Replicator = rep })
	const users, flood = 20, 1000
	regular := make([]*client, users)
	for i := range regular {
		regular[i], _ = sessionClient(t, m)
		regular[i].do("/set")
		regular[i].do("/") // came back: not a first visit
	}
	for i := range flood {
		c, _ := sessionClient(t, m)
		if rec := c.do("/set"); rec.Code != http.StatusOK || c.cookie == "" {
			t.Fatalf("flood request %d: code %d, cookie %q", i, rec.Code, c.cookie)
		}
	}
	if n := m.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100", n)
	}
	wantEvicted := uint64(flood - (100 - users))
	if got := m.Stats().Evicted; got != wantEvicted {
		t.Fatalf("Stats().Evicted = %d, want %d", got, wantEvicted)
	}
	for i, c := range regular {
		before := c.cookie
		var isNew bool
		c.h = m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { isNew = FromContext(r.Context()).IsNew() }))
		c.do("/")
		if isNew || c.cookie != before {
			t.Fatalf("returning user %d lost the session to the flood", i)
		}
	}
	login, isNew := sessionClient(t, m)
	if rec := login.do("/set"); rec.Code != http.StatusOK {
		t.Fatalf("login during the flood: code %d", rec.Code)
	}
	login.do("/")
	if *isNew {
		t.Fatal("the new login was evicted at once")
	}
	// The evicted sessions' copies go the way of expired ones: epoch 0.
	removals := 0
	for _, c := range rep.take() {
		if c.Removed {
			removals++
			if c.Epoch != 0 {
				t.Fatalf("eviction replicated as an end (epoch %d), not an expiry", c.Epoch)
			}
		}
	}
	if removals != int(wantEvicted)+1 {
		t.Fatalf("%d removals replicated, want %d", removals, wantEvicted+1)
	}
}

// Eviction takes the oldest first-visit sessions first.
func TestEvictionTakesOldestFirst(t *testing.T) {
	const max, more = 50, 10
	m, clk := newManager(t, func(c *Config) { c.Limits.MaxSessions = max })
	var cs []*client
	for range max + more {
		clk.Add(time.Second)
		c, _ := sessionClient(t, m)
		c.do("/set")
		cs = append(cs, c)
	}
	for i, c := range cs {
		if gone, want := !present(m, c.cookie), i < more; gone != want {
			t.Fatalf("session %d gone = %v, want %v", i, gone, want)
		}
	}
}

// A first-visit session that a request holds is not evicted: the node
// answers ErrNodeFull when nothing else can go.
func TestEvictionSkipsHeldSessions(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxSessions = 1 })
	c, _ := sessionClient(t, m)
	c.do("/set")
	s := m.Load(requestWithCookie(m, c.cookie))
	defer s.Release()
	if s.IsNew() {
		t.Fatal("session not found")
	}
	other, _ := sessionClient(t, m)
	if rec := other.do("/set"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("code %d, want 503: a held session was evicted", rec.Code)
	}
	if got := m.Stats().Evicted; got != 0 {
		t.Fatalf("Evicted = %d", got)
	}
}

// A session nobody came back with ends after FirstVisitIdleTimeout; one
// that saw a second request lives for the full IdleTimeout.
func TestFirstVisitIdleTimeout(t *testing.T) {
	m, clk := newManager(t, func(c *Config) {
		c.IdleTimeout = 30 * time.Minute
		c.FirstVisitIdleTimeout = 5 * time.Minute
		c.SweepInterval = time.Minute
	})
	once, onceNew := sessionClient(t, m)
	once.do("/set")
	back, backNew := sessionClient(t, m)
	back.do("/set")
	back.do("/")
	clk.Add(6 * time.Minute)
	if n := m.Sweep(); n != 1 {
		t.Fatalf("swept %d, want the one first-visit session", n)
	}
	once.do("/")
	back.do("/")
	if !*onceNew {
		t.Fatal("first-visit session outlived FirstVisitIdleTimeout")
	}
	if *backNew {
		t.Fatal("returning session ended after FirstVisitIdleTimeout")
	}
	clk.Add(29 * time.Minute)
	back.do("/")
	if *backNew {
		t.Fatal("returning session ended before IdleTimeout")
	}
}

// A renewed session (Regenerate) came back with a cookie: it is not a
// first visit, so a flood does not evict it.
func TestRegeneratedSessionIsNotFirstVisit(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxSessions = 1 })
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		_ = s.Set("k", "v")
		if r.URL.Path == "/login" {
			s.Regenerate()
		}
	})
	c.do("/")
	c.do("/login")
	other, _ := sessionClient(t, m)
	if rec := other.do("/set"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("code %d: the renewed session was evicted", rec.Code)
	}
}

func TestFirstVisitIdleTimeoutValidated(t *testing.T) {
	_, err := NewManager(Config{Keys: []KeyPair{testKey}, FirstVisitIdleTimeout: -time.Second})
	if err == nil {
		t.Fatal("negative FirstVisitIdleTimeout accepted")
	}
}

func requestWithCookie(m *Manager, value string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://example.test/", nil)
	req.AddCookie(&http.Cookie{Name: m.cfg.Cookie.Name, Value: value})
	return req
}

// present reports whether the session behind cookie value is stored (and
// makes it a returning one).
func present(m *Manager, value string) bool {
	s := m.Load(requestWithCookie(m, value))
	defer s.Release()
	return !s.IsNew()
}

// Concurrent new sessions on a full node each make room: none is refused
// while first-visit sessions remain to evict.
func TestConcurrentFloodIsNeverRefused(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxSessions = 50 })
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 500 {
				c, _ := sessionClient(t, m)
				if rec := c.do("/set"); rec.Code != http.StatusOK {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Fatalf("%d of 4000 new sessions refused", n)
	}
	if n := m.Len(); n > 50 {
		t.Fatalf("Len = %d after the flood, want at most 50", n)
	}
}
