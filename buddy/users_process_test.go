//go:build unix

package buddy

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

// users asks node id for user's sessions across the cluster (and to end
// them, with end).
func (c *pcluster) users(id, user string, end bool) childUsers {
	c.t.Helper()
	u := "http://" + c.http[id] + "/users?u=" + user
	if end {
		u += "&end=1"
	}
	resp, err := c.hc.Get(u)
	if err != nil {
		c.t.Fatalf("users via %s: %v", id, err)
	}
	defer resp.Body.Close()
	var out childUsers
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		c.t.Fatalf("users via %s: %v", id, err)
	}
	return out
}

// A user logged in on every node of a cluster of processes: whichever
// node is killed with SIGKILL, the survivors list every one of the user's
// sessions (the dead node's from its buddy's copies) and say every node
// answered, and InvalidateUser logs the user out everywhere: no survivor
// serves any of those sessions logged in afterwards.
func TestSIGKILLUserSessions(t *testing.T) {
	c := newPCluster(t, 3)
	c.startAll()
	for _, victim := range c.ids {
		var vs []*visitor
		var want []string
		for _, id := range c.ids {
			v := &visitor{c: c}
			code, body, sid := v.do(id, "/user?u=u42")
			if code != http.StatusOK {
				t.Fatalf("login via %s: %d %s", id, code, body)
			}
			if _, body, _ := v.do(id, "/whoami"); body != "user=u42" {
				t.Fatalf("logged in via %s: %q", id, body)
			}
			vs, want = append(vs, v), append(want, sid)
		}
		slices.Sort(want)
		var survivors []string
		for _, id := range c.ids {
			if id != victim {
				survivors = append(survivors, id)
			}
		}
		c.procs[victim].kill()
		c.waitFor("the survivors to see "+victim+" dead", func() bool {
			for _, id := range survivors {
				st, ok := c.stats(id, false)
				if !ok {
					return false
				}
				for _, p := range st.Node.Peers {
					if p.ID == victim && p.State != Dead && p.State != Left {
						return false
					}
				}
			}
			return true
		})
		for _, id := range survivors {
			got := c.users(id, "u42", false)
			var ids []string
			for _, s := range got.Sessions {
				ids = append(ids, s.ID)
			}
			slices.Sort(ids)
			if got.Err != "" || !slices.Equal(ids, want) {
				t.Fatalf("%s killed, via %s: %v (%s), want %v", victim, id, ids, got.Err, want)
			}
		}
		if got := c.users(survivors[0], "u42", true); got.Err != "" || got.Ended != 3 {
			t.Fatalf("%s killed: InvalidateUser ended %d (%s)", victim, got.Ended, got.Err)
		}
		for i, v := range vs {
			for _, id := range survivors {
				code, body, _ := v.do(id, "/whoami")
				if code != http.StatusOK || body != "user=" {
					t.Fatalf("%s killed: session %d via %s: %d %q", victim, i, id, code, body)
				}
				if got := v.c.users(id, "u42", false); len(got.Sessions) != 0 {
					t.Fatalf("%s killed: still listed via %s: %+v", victim, id, got.Sessions)
				}
			}
		}
		c.start(victim)
		c.waitFormed(c.ids...)
	}
}
