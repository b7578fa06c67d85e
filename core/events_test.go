package core

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// eventLog records every event of every hook.
type eventLog struct {
	mu  sync.Mutex
	evs []string // "kind reason"
	all []Event
}

func (l *eventLog) hooks() Events {
	rec := func(kind string) func(context.Context, Event) {
		return func(_ context.Context, e Event) {
			l.mu.Lock()
			defer l.mu.Unlock()
			s := kind
			if e.Reason != "" {
				s += " " + string(e.Reason)
			}
			l.evs = append(l.evs, s)
			l.all = append(l.all, e)
		}
	}
	return Events{OnCreated: rec("created"), OnRegenerated: rec("regenerated"), OnInvalidated: rec("invalidated"),
		OnExpired: rec("expired"), OnTakenOver: rec("taken")}
}

func (l *eventLog) take() ([]string, []Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs, all := l.evs, l.all
	l.evs, l.all = nil, nil
	return evs, all
}

func TestEventsLifecycle(t *testing.T) {
	var log eventLog
	m, clk := newManager(t, func(c *Config) {
		c.Events = log.hooks()
		c.IdleTimeout = 10 * time.Minute
		c.SweepInterval = time.Minute
	})
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			_ = s.Set("k", 1)
		case "/login":
			s.Regenerate()
		case "/logout":
			s.Invalidate()
		}
	})
	want := func(step string, exp ...string) []Event {
		t.Helper()
		got, all := log.take()
		if !slices.Equal(got, exp) {
			t.Fatalf("%s: events %q, want %q", step, got, exp)
		}
		return all
	}
	c.do("/") // nothing stored
	want("read")
	c.do("/set")
	evs := want("first write", "created")
	id := evs[0].ID
	c.do("/set")
	want("second write")
	c.do("/login")
	evs = want("login", "regenerated")
	if evs[0].PrevID != id || evs[0].ID == id {
		t.Fatalf("regenerated %s -> %s, want from %s", evs[0].PrevID, evs[0].ID, id)
	}
	c.do("/logout")
	want("logout", "invalidated logout")

	c.do("/set")
	want("new session", "created")
	clk.Add(11 * time.Minute)
	m.Sweep()
	want("expiry", "expired idle")
	m.Sweep()
	want("second sweep")
}

func TestEventsLifetimeAndEviction(t *testing.T) {
	var log eventLog
	m, clk := newManager(t, func(c *Config) {
		c.Events = log.hooks()
		c.IdleTimeout = time.Hour
		c.FirstVisitIdleTimeout = time.Hour
		c.Lifetime = 90 * time.Minute
		c.SweepInterval = time.Minute
		c.Limits.MaxSessions = 1
	})
	h := func(w http.ResponseWriter, r *http.Request) { _ = FromContext(r.Context()).Set("k", 1) }
	a := newClient(t, m, h)
	a.do("/")
	b := newClient(t, m, h)
	b.do("/") // evicts a's first-visit session
	got, _ := log.take()
	if !slices.Equal(got, []string{"created", "expired evicted", "created"}) {
		t.Fatalf("events %q", got)
	}
	for range 3 {
		clk.Add(31 * time.Minute)
		b.do("/")
	}
	m.Sweep()
	if got, _ := log.take(); !slices.Equal(got, []string{"expired lifetime"}) {
		t.Fatalf("events %q", got)
	}
}

// A takeover is reported once, with its origin; a copy not newer than the
// one held is not a takeover.
func TestEventsTakenOver(t *testing.T) {
	var log eventLog
	m, _ := newManager(t, func(c *Config) { c.Events = log.hooks() })
	_, c := foreignCookie(t, 1)
	c.Epoch = 2
	c.Origin = Origin{From: "n0", Reason: ReasonFailover}
	if err := m.Install(c); err != nil {
		t.Fatal(err)
	}
	if err := m.Install(c); err != nil { // the same copy again
		t.Fatal(err)
	}
	got, all := log.take()
	if !slices.Equal(got, []string{"taken failover"}) || all[0].From != "n0" || all[0].ID != c.ID {
		t.Fatalf("events %q %+v", got, all)
	}
}

// A fetched copy reports the origin its Fetcher names, on the request
// that fetched it, before the handler runs.
func TestEventsFetched(t *testing.T) {
	var log eventLog
	cookie, full := foreignCookie(t, 1)
	f := &fakeFetcher{fetch: func(id string, _ Route, _ Stamp) (*Change, error) {
		c := *full
		c.Epoch = 2
		c.Origin = Origin{From: "n0", Reason: ReasonHandover}
		return &c, nil
	}}
	f.loc = Route{Owner: "n1"}
	m, _ := newManager(t, func(c *Config) { c.Events = log.hooks(); c.Replicator = f })
	var seen []string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = log.take()
	}))
	request(h, cookie)
	if !slices.Equal(seen, []string{"taken handover"}) {
		t.Fatalf("events before the handler %q", seen)
	}
	request(h, cookie) // served here now
	if got, _ := log.take(); len(got) != 0 || f.calls.Load() != 1 {
		t.Fatalf("events %q, %d fetches", got, f.calls.Load())
	}
}

// A hook that panics is recovered: the request and the sweeper go on.
func TestEventsHookPanics(t *testing.T) {
	m, _ := newManager(t, func(c *Config) {
		c.Events.OnCreated = func(context.Context, Event) { panic("hook") }
	})
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) { _ = FromContext(r.Context()).Set("k", 1) })
	if rec := c.do("/"); rec.Code != http.StatusOK || m.Len() != 1 {
		t.Fatalf("status %d, %d sessions", rec.Code, m.Len())
	}
}
