package buddy

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// loggedIn starts 3 nodes on a settable clock with a 10 s RegenerateGrace
// and logs a browser with a cart in on n1. It returns the nodes, the
// browser (holding the new cookie), the old cookie, the new session's ID
// and a function that moves the clock on.
func loggedIn(t *testing.T) (ms []*member, b *browser, old, newID string, advance func(time.Duration)) {
	t.Helper()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ms, _ = coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) {
		c.Now = clock
		c.RegenerateGrace = 10 * time.Second
	})
	b = &browser{t: t}
	b.do(ms[0], "/set?cart=apple")
	old = b.cookie
	b.do(ms[0], "/login")
	if b.cookie == old {
		t.Fatal("login kept the cookie")
	}
	return ms, b, old, b.id, func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

// After a login on one node, requests that still bring the old cookie get
// the new session on every node, for RegenerateGrace: the node they reach
// fetches the new session (which moves there, as any fetched session
// does); then the old ID is dead everywhere.
func TestRegenerateGraceAcrossCluster(t *testing.T) {
	ms, b, old, newID, advance := loggedIn(t)
	for _, m := range []*member{ms[1], ms[2], ms[0], ms[1]} {
		got, code, id := read(t, m, old)
		if code != http.StatusOK || id != newID || got["cart"] != "apple" {
			t.Fatalf("old cookie via %s: %d, session %s %v; want %s", m.node.ID(), code, id, got, newID)
		}
	}
	// A write with the old cookie lands in the new session.
	ob := &browser{t: t, cookie: old}
	if rec := ob.do(ms[2], "/set?theme=dark"); rec.Code != http.StatusOK || ob.id != newID {
		t.Fatalf("write with the old cookie: %d, session %s", rec.Code, ob.id)
	}
	if got := readAll(t, ms[0], b.cookie); got["theme"] != "dark" || got["cart"] != "apple" {
		t.Fatalf("new cookie reads %v", got)
	}
	held := 0
	for _, m := range ms {
		held += m.mgr.Len()
	}
	if held != 1 {
		t.Fatalf("%d sessions held in the cluster, want 1", held)
	}
	advance(11 * time.Second)
	for _, m := range ms {
		if _, _, id := read(t, m, old); id == newID {
			t.Fatalf("old cookie via %s after the grace window still loads the session", m.node.ID())
		}
	}
	if got := readAll(t, ms[1], b.cookie); got["cart"] != "apple" {
		t.Fatalf("new cookie after the grace window reads %v", got)
	}
}

// The new session may move before a request with the old cookie comes (a
// parallel request with the new cookie reached another node): the node it
// moved to serves the old ID too, and so does every other node. Moving the
// session does not stretch the window: it ends RegenerateGrace after the
// login wherever the session is by then.
func TestRegenerateGraceAfterTheNewSessionMoved(t *testing.T) {
	ms, b, old, newID, advance := loggedIn(t)
	// n1's buddy is n2; n3 knew nothing of the login when the new session
	// moved there.
	if got := readAll(t, ms[2], b.cookie); got["cart"] != "apple" {
		t.Fatalf("new cookie via n3: %v", got)
	}
	for _, m := range []*member{ms[2], ms[0], ms[1]} {
		got, code, id := read(t, m, old)
		if code != http.StatusOK || id != newID || got["cart"] != "apple" {
			t.Fatalf("old cookie via %s after the new session moved to n3: %d, session %s %v; want %s", m.node.ID(), code, id, got, newID)
		}
	}
	// 6 s after the login the session moves again (to n3 with the new
	// cookie): the window still ends 10 s after the login, not 10 s after
	// the move.
	advance(6 * time.Second)
	if got := readAll(t, ms[2], b.cookie); got["cart"] != "apple" {
		t.Fatalf("new cookie via n3 at 6 s: %v", got)
	}
	advance(5 * time.Second)
	for _, m := range ms {
		if _, _, id := read(t, m, old); id == newID {
			t.Fatalf("old cookie via %s 11 s after the login still loads the session", m.node.ID())
		}
	}
	if got := readAll(t, ms[0], b.cookie); got["cart"] != "apple" {
		t.Fatalf("new cookie after the window: %v", got)
	}
}
