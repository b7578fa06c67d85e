package buddy

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// prevIDs returns, for each regenerated session, the ID it had before.
func (l *clusterEvents) prevIDs() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for i, e := range l.evs {
		if l.k[i] == "regenerated" {
			out[e.ID] = e.PrevID
		}
	}
	return out
}

// kinds returns how many events of each kind the cluster reported.
func (l *clusterEvents) kinds() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, k := range l.k {
		out[k]++
	}
	return out
}

// A login (Regenerate) on each node is reported once in the cluster, by
// the owner, with the old ID, and neither as a creation nor as a logout;
// reading the new session, and the old cookie within the grace window,
// through every node reports nothing more than the moves. A logout
// through a node that is not the owner is reported once, by the node that
// ended it; nothing more when the dead cookies come back anywhere.
func TestEventsLoginLogoutOnceInCluster(t *testing.T) {
	var log clusterEvents
	ms, _ := coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) { log.hooks(c) })
	type user struct {
		b          *browser
		owner      *member
		old, oldID string // the cookie and ID before the login
		loggedIn   string // the cookie after it
	}
	var users []*user
	for i := range 9 {
		u := &user{b: &browser{t: t}, owner: ms[i%3]}
		if rec := u.b.do(u.owner, fmt.Sprintf("/set?cart=%d", i)); rec.Code != http.StatusOK {
			t.Fatalf("write: %d", rec.Code)
		}
		u.old, u.oldID = u.b.cookie, u.b.id
		users = append(users, u)
	}
	log.reset()
	var newIDs []string
	for _, u := range users {
		if rec := u.b.do(u.owner, "/login"); rec.Code != http.StatusOK || u.b.id == u.oldID {
			t.Fatalf("login via %s: %d, ID %s -> %s", u.owner.node.ID(), rec.Code, u.oldID, u.b.id)
		}
		newIDs = append(newIDs, u.b.id)
	}
	where := log.exactlyOnce(t, "regenerated", "", newIDs)
	prev := log.prevIDs()
	for _, u := range users {
		if where[u.b.id] != u.owner.node.ID() || prev[u.b.id] != u.oldID {
			t.Fatalf("session %s: regenerated on %q from %q; want %s from %s", u.b.id, where[u.b.id], prev[u.b.id], u.owner.node.ID(), u.oldID)
		}
	}
	if k := log.kinds(); len(k) != 1 {
		t.Fatalf("a login reported %v, want regenerated events only", k)
	}

	// Every node reads every new session, and the old cookie (a parallel
	// request within the grace window): moves only.
	log.reset()
	for i, u := range users {
		for j := range ms {
			m := ms[(i+j+1)%3]
			// The old cookie and the new one, in either order (the new
			// session may have moved by its new cookie before an old-cookie
			// request comes: TestRegenerateGraceAfterTheNewSessionMoved).
			first, second := u.old, u.b.cookie
			if j%2 == 1 {
				first, second = second, first
			}
			for _, cookie := range []string{first, second} {
				if got, _, id := read(t, m, cookie); id != u.b.id || got["cart"] != fmt.Sprint(i) {
					t.Fatalf("session %d via %s: session %s %v, want %s", i, m.node.ID(), id, got, u.b.id)
				}
			}
		}
		u.owner = ms[i%3] // the last reader
	}
	for k, n := range log.kinds() {
		if k != "taken" {
			t.Fatalf("reads reported %d %s events", n, k)
		}
	}
	if n, _ := log.count("taken", core.ReasonFailover); len(n) != 0 {
		t.Fatalf("failovers without a failure: %v", n)
	}

	// Log out through another node than the owner.
	log.reset()
	for i, u := range users {
		u.loggedIn = u.b.cookie
		m := ms[(i+1)%3]
		if rec := u.b.do(m, "/logout"); rec.Code != http.StatusOK || u.b.cookie != "" {
			t.Fatalf("logout %d via %s: %d, cookie %q", i, m.node.ID(), rec.Code, u.b.cookie)
		}
		u.owner = m
	}
	// exactlyOnce also fails on an event of any other ID (an old one).
	where = log.exactlyOnce(t, "invalidated", core.ReasonLogout, newIDs)
	for i, u := range users {
		if where[newIDs[i]] != u.owner.node.ID() {
			t.Fatalf("session %s: logout reported by %q, it went through %s", newIDs[i], where[newIDs[i]], u.owner.node.ID())
		}
	}
	log.reset()
	for i, u := range users {
		for _, m := range ms {
			for _, c := range []string{u.old, u.loggedIn} {
				if got := readAll(t, m, c); len(got) != 0 {
					t.Fatalf("a dead cookie of session %d via %s reads %v", i, m.node.ID(), got)
				}
			}
		}
	}
	if k := log.kinds(); len(k) != 0 {
		t.Fatalf("dead cookies brought back reported %v", k)
	}
}

// Limits.MaxSessionsPerUser through an abrupt kill of the node holding the
// user's oldest session: the survivors still count it (from the buddy's
// copy); LimitEndOldest ends it, so that no node revives it, and LimitReject
// refuses the new login, the dead node's session still served.
func TestMaxSessionsPerUserThroughKill(t *testing.T) {
	for name, policy := range map[string]core.UserLimitPolicy{"end-oldest": core.LimitEndOldest, "reject": core.LimitReject} {
		t.Run(name, func(t *testing.T) {
			var log clusterEvents
			ms, _ := coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) {
				log.hooks(c)
				c.Limits.MaxSessionsPerUser = 2
				c.Limits.UserLimit = policy
			})
			first := login(t, ms[0], "u42")
			time.Sleep(2 * time.Millisecond) // distinct creation times
			second := login(t, ms[1], "u42")
			firstID := first.id
			ms[0].kill()
			waitRing(t, ms)
			survivors := live(ms)
			list, err := survivors[1].mgr.UserSessions(t.Context(), "u42")
			if err != nil || len(list) != 2 {
				t.Fatalf("after the kill: %v, %v", userIDs(list), err)
			}
			log.reset()
			third := &browser{t: t}
			rec := third.do(survivors[1], "/user?u=u42")
			list, err = survivors[0].mgr.UserSessions(t.Context(), "u42")
			if err != nil || len(list) != 2 {
				t.Fatalf("after the third login: %v, %v", userIDs(list), err)
			}
			switch policy {
			case core.LimitEndOldest:
				if rec.Code != http.StatusOK {
					t.Fatalf("third login: %d", rec.Code)
				}
				log.exactlyOnce(t, "invalidated", core.ReasonLimit, []string{firstID})
				for _, m := range survivors {
					if u := first.do(m, "/").Header().Get("X-User"); u != "" {
						t.Fatalf("the oldest session revived on %s as %q", m.node.ID(), u)
					}
				}
				if !slices.Contains(userIDs(list), third.id) || slices.Contains(userIDs(list), firstID) {
					t.Fatalf("listed %v: want the third %s, not the first %s", userIDs(list), third.id, firstID)
				}
			case core.LimitReject:
				if rec.Code != http.StatusConflict {
					t.Fatalf("third login: %d, want 409", rec.Code)
				}
				var code int
				for range 100 { // the dead node's session, from its buddy's copy
					if code = first.do(survivors[0], "/").Code; code != http.StatusServiceUnavailable {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if code != http.StatusOK || first.id != firstID || first.do(survivors[0], "/").Header().Get("X-User") != "u42" {
					t.Fatalf("the first session after the kill: %d, %s", code, first.id)
				}
			}
			if u := second.do(survivors[0], "/").Header().Get("X-User"); u != "u42" {
				t.Fatalf("the second session: user %q", u)
			}
		})
	}
}
