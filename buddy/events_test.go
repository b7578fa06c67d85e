package buddy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// clusterEvents records the events of every node of a cluster.
type clusterEvents struct {
	mu  sync.Mutex
	evs []core.Event
	k   []string // kind of each
}

func (l *clusterEvents) hooks(c *core.Config) {
	rec := func(kind string) func(context.Context, core.Event) {
		return func(_ context.Context, e core.Event) {
			l.mu.Lock()
			l.evs = append(l.evs, e)
			l.k = append(l.k, kind)
			l.mu.Unlock()
		}
	}
	c.Events = core.Events{OnCreated: rec("created"), OnRegenerated: rec("regenerated"), OnInvalidated: rec("invalidated"),
		OnExpired: rec("expired"), OnTakenOver: rec("taken")}
}

// count returns, for each session ID, how many events of kind (and
// reason, unless "") the cluster reported, and the nodes that did.
func (l *clusterEvents) count(kind string, reason core.Reason) (map[string]int, map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, where := map[string]int{}, map[string]string{}
	for i, e := range l.evs {
		if l.k[i] == kind && (reason == "" || e.Reason == reason) {
			n[e.ID]++
			where[e.ID] = e.Node
		}
	}
	return n, where
}

func (l *clusterEvents) reset() {
	l.mu.Lock()
	l.evs, l.k = nil, nil
	l.mu.Unlock()
}

// exactlyOnce fails unless each of ids has exactly one event of kind and
// reason, and no other ID has one.
func (l *clusterEvents) exactlyOnce(t *testing.T, kind string, reason core.Reason, ids []string) map[string]string {
	t.Helper()
	n, where := l.count(kind, reason)
	for _, id := range ids {
		if n[id] != 1 {
			t.Errorf("session %s: %d %s/%s events, want 1", id, n[id], kind, reason)
		}
	}
	if len(n) != len(ids) {
		t.Errorf("%d sessions with %s/%s events, want %d", len(n), kind, reason, len(ids))
	}
	return where
}

// A node killed: each of its sessions is reported taken over exactly once
// in the cluster, by the node that took it, as a failover; a drained
// node's sessions once each, as handovers; nothing more when they are read
// again anywhere.
func TestEventsOnClusterKillAndDrain(t *testing.T) {
	var log clusterEvents
	ms, _ := coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) { log.hooks(c) })
	n1, n2, n3 := ms[0], ms[1], ms[2]
	var bs []*browser
	var ids []string
	for i := range 12 {
		b := &browser{t: t}
		if rec := b.do(n1, fmt.Sprintf("/set?k=%d", i)); rec.Code != http.StatusOK {
			t.Fatalf("write: %d", rec.Code)
		}
		bs, ids = append(bs, b), append(ids, b.id)
	}
	for id, node := range log.exactlyOnce(t, "created", "", ids) {
		if node != "n1" {
			t.Fatalf("session %s created on %s", id, node)
		}
	}
	n1.kill()
	waitRing(t, ms)
	for i, b := range bs { // read through both survivors, twice
		for round := range 2 {
			m := []*member{n2, n3}[(i+round)%2]
			var code int
			for range 100 {
				if code = b.do(m, "/").Code; code != http.StatusServiceUnavailable {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if code != http.StatusOK {
				t.Fatalf("read via %s: %d", m.node.ID(), code)
			}
		}
	}
	where := log.exactlyOnce(t, "taken", core.ReasonFailover, ids)
	if n, _ := log.count("taken", ""); len(n) != len(ids) {
		t.Fatalf("taken-over events for %d sessions, want %d", len(n), len(ids))
	}
	for id, node := range where {
		if node != "n2" && node != "n3" {
			t.Fatalf("session %s taken over by %q", id, node)
		}
	}

	// Drain n2: its sessions (some taken over above, some new) go to its
	// buddy, each reported once as a handover.
	log.reset()
	var onN2 []string
	for i := range 6 {
		b := &browser{t: t}
		b.do(n2, fmt.Sprintf("/set?d=%d", i))
		bs = append(bs, b)
	}
	n2.mgr.IDs(func(id string) bool { onN2 = append(onN2, id); return true })
	if len(onN2) < 6 {
		t.Fatalf("n2 owns %d sessions", len(onN2))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := n2.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	n2.mgr.Close()
	n2.gone.Store(true)
	for _, b := range bs {
		b.do(n3, "/")
	}
	for id, node := range log.exactlyOnce(t, "taken", core.ReasonHandover, onN2) {
		if node != "n3" {
			t.Fatalf("session %s handed to %q", id, node)
		}
	}
	if n, _ := log.count("taken", core.ReasonFailover); len(n) != 0 {
		t.Fatalf("failovers after a drain: %v", n)
	}
}

// Expiry is reported once, by the owner; when the owner is gone, by the
// node whose backup copy expires.
func TestEventsExpiryOnce(t *testing.T) {
	var log clusterEvents
	clk := struct {
		sync.Mutex
		now time.Time
	}{now: time.Now()}
	now := func() time.Time { clk.Lock(); defer clk.Unlock(); return clk.now }
	advance := func(d time.Duration) { clk.Lock(); clk.now = clk.now.Add(d); clk.Unlock() }
	ms, _ := coreCluster(t, 3, func(c *Config) { fastTimers(c); c.Now = now; c.TouchInterval = time.Second }, func(_ int, c *core.Config) {
		log.hooks(c)
		c.Now = now
		c.IdleTimeout = time.Minute
		c.SweepInterval = time.Second
	})
	n1 := ms[0]
	var ids []string
	for i := range 5 {
		b := &browser{t: t}
		b.do(n1, fmt.Sprintf("/set?k=%d", i))
		ids = append(ids, b.id)
	}
	advance(2 * time.Minute)
	for _, m := range ms {
		m.mgr.Sweep()
	}
	waitFor(t, "backup copies dropped", func() bool {
		for _, m := range ms[1:] {
			if m.node.Stats().Backups != 0 {
				return false
			}
		}
		return true
	})
	for _, m := range ms {
		m.node.ExpireBackups()
	}
	for id, node := range log.exactlyOnce(t, "expired", core.ReasonIdle, ids) {
		if node != "n1" {
			t.Fatalf("session %s expiry reported by %s", id, node)
		}
	}

	// The owner killed: its buddy reports the expiry of its copies.
	log.reset()
	ids = ids[:0]
	for i := range 5 {
		b := &browser{t: t}
		b.do(n1, fmt.Sprintf("/set?k=%d", i))
		ids = append(ids, b.id)
	}
	buddy := n1.node.sender.buddy().ID
	n1.kill()
	waitRing(t, ms)
	advance(2 * time.Minute)
	for _, m := range live(ms) {
		m.mgr.Sweep()
		m.node.ExpireBackups()
		m.node.ExpireBackups()
	}
	for id, node := range log.exactlyOnce(t, "expired", core.ReasonBackupExpired, ids) {
		if node != buddy {
			t.Fatalf("session %s expiry reported by %s, its copy was on %s", id, node, buddy)
		}
	}
}
