package buddy

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// userIDs returns the IDs of list, sorted.
func userIDs(list []core.SessionInfo) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

// login logs a new browser in as user through m.
func login(t *testing.T, m *member, user string) *browser {
	t.Helper()
	b := &browser{t: t}
	if rec := b.do(m, "/user?u="+user); rec.Code != http.StatusOK {
		t.Fatalf("login via %s: %d %s", m.node.ID(), rec.Code, rec.Body)
	}
	return b
}

// A user's sessions on three nodes are listed from any node; a node
// killed, its sessions are still listed (from its buddy's copies) and
// InvalidateUser ends them too, so that no node takes them over.
func TestUserSessionsAcrossCluster(t *testing.T) {
	var log clusterEvents
	ms, _ := coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) { log.hooks(c) })
	var bs []*browser
	var want []string
	for _, m := range ms {
		b := login(t, m, "u42")
		bs, want = append(bs, b), append(want, b.id)
	}
	other := login(t, ms[0], "u7")
	slices.Sort(want)
	for _, m := range ms {
		list, err := m.mgr.UserSessions(t.Context(), "u42")
		if err != nil || !slices.Equal(userIDs(list), want) {
			t.Fatalf("via %s: %v, %v; want %v", m.node.ID(), userIDs(list), err, want)
		}
		for _, s := range list {
			if s.Backup || s.Node == "" || s.Created.IsZero() {
				t.Fatalf("via %s: %+v", m.node.ID(), s)
			}
		}
	}
	ms[1].kill()
	waitRing(t, ms)
	list, err := ms[0].mgr.UserSessions(t.Context(), "u42")
	if err != nil || !slices.Equal(userIDs(list), want) {
		t.Fatalf("after a kill: %v, %v; want %v", userIDs(list), err, want)
	}
	for _, s := range list {
		if s.ID == bs[1].id && (!s.Backup || s.Node != "n2") {
			t.Fatalf("the killed node's session listed as %+v", s)
		}
	}
	log.reset()
	n, err := ms[2].mgr.InvalidateUser(t.Context(), "u42")
	if err != nil || n != 3 {
		t.Fatalf("InvalidateUser: %d, %v", n, err)
	}
	log.exactlyOnce(t, "invalidated", core.ReasonUser, want)
	for i, b := range bs {
		for _, m := range live(ms) {
			if rec := b.do(m, "/"); rec.Header().Get("X-User") != "" {
				t.Fatalf("session %d still logged in via %s", i, m.node.ID())
			}
		}
	}
	if list, err := ms[0].mgr.UserSessions(t.Context(), "u42"); len(list) != 0 || err != nil {
		t.Fatalf("after InvalidateUser: %v, %v", userIDs(list), err)
	}
	if rec := other.do(ms[2], "/"); rec.Header().Get("X-User") != "u7" {
		t.Fatal("another user logged out")
	}
}

// A peer that does not answer makes the listing incomplete, and says which.
func TestUserSessionsIncomplete(t *testing.T) {
	ms, fn := coreCluster(t, 3, func(c *Config) {
		fastTimers(c)
		c.ReplicationTimeout = 300 * time.Millisecond
		c.SuspectAfter, c.DeadAfter = time.Minute, 2*time.Minute // n3 stays alive in n1's view
	}, nil)
	login(t, ms[0], "u1")
	fn.Partition([]string{"n1"}, []string{"n3"})
	defer fn.Heal()
	_, err := ms[0].mgr.UserSessions(t.Context(), "u1")
	var inc *core.IncompleteError
	if !errors.Is(err, core.ErrIncomplete) || !errors.As(err, &inc) || !slices.Equal(inc.Unanswered, []string{"n3"}) {
		t.Fatalf("with n3 cut off: %v", err)
	}
}

// The limit counts the user's sessions on every node: the oldest one,
// on another node, is ended; with LimitReject the login fails.
func TestMaxSessionsPerUserAcrossCluster(t *testing.T) {
	for _, policy := range []core.UserLimitPolicy{core.LimitEndOldest, core.LimitReject} {
		ms, _ := coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) {
			c.Limits.MaxSessionsPerUser = 2
			c.Limits.UserLimit = policy
		})
		first := login(t, ms[0], "u42")
		time.Sleep(2 * time.Millisecond) // distinct creation times
		second := login(t, ms[1], "u42")
		b := &browser{t: t}
		rec := b.do(ms[2], "/user?u=u42")
		list, err := ms[2].mgr.UserSessions(t.Context(), "u42")
		if err != nil || len(list) != 2 {
			t.Fatalf("%v: %d sessions, %v", policy, len(list), err)
		}
		switch policy {
		case core.LimitEndOldest:
			if rec.Code != http.StatusOK || first.do(ms[0], "/").Header().Get("X-User") != "" || second.do(ms[1], "/").Header().Get("X-User") != "u42" {
				t.Fatalf("end oldest: %d", rec.Code)
			}
		case core.LimitReject:
			if rec.Code != http.StatusConflict || first.do(ms[0], "/").Header().Get("X-User") != "u42" {
				t.Fatalf("reject: %d", rec.Code)
			}
		}
	}
}

func TestUsersWireRoundTrip(t *testing.T) {
	u := wire.Users{Op: wire.UsersEnd, User: "u42", IDs: []string{"a", "b"}, Reason: "user"}
	got, err := wire.DecodeUsers(wire.AppendUsers(nil, u))
	if err != nil || got.User != u.User || !slices.Equal(got.IDs, u.IDs) || got.Reason != u.Reason || got.All {
		t.Fatalf("%+v, %v", got, err)
	}
	now := time.Unix(0, time.Now().UnixNano())
	r := wire.UsersReply{Ended: 3, Sessions: []core.SessionInfo{{ID: "s1", Node: "n1", Created: now, Accessed: now, Backup: true}}}
	rr, err := wire.DecodeUsersReply(wire.AppendUsersReply(nil, r))
	if err != nil || rr.Ended != 3 || len(rr.Sessions) != 1 || rr.Sessions[0] != r.Sessions[0] {
		t.Fatalf("%+v, %v", rr, err)
	}
	for _, bad := range [][]byte{nil, {9}, {1, 0, 0, 0, 0}, append(wire.AppendUsers(nil, u), 0)} {
		if _, err := wire.DecodeUsers(bad); !errors.Is(err, wire.ErrMalformed) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
}
