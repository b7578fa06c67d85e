//go:build unix

package buddy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// events returns node id's events of kind and reason, counted by session.
func (c *pcluster) events(id, kind string, reason core.Reason) map[string]int {
	c.t.Helper()
	resp, err := c.hc.Get("http://" + c.http[id] + "/events")
	if err != nil {
		c.t.Fatalf("events of %s: %v", id, err)
	}
	defer resp.Body.Close()
	var list []childEvent
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		c.t.Fatalf("events of %s: %v", id, err)
	}
	out := map[string]int{}
	for _, e := range list {
		if e.Kind == kind && e.Reason == reason {
			out[e.ID]++
		}
	}
	return out
}

// Node processes: after a SIGKILL of n1, every one of its sessions is
// reported taken over exactly once in the cluster, as a failover, however
// often it is read and through whichever node; after a SIGTERM of the node
// that took some of them, each of those is reported handed over exactly
// once, by its buddy.
func TestSIGKILLTakenOverOnce(t *testing.T) {
	c := newPCluster(t, 3)
	c.startAll()
	var vs []*visitor
	ids := map[string]bool{}
	for i := range 10 {
		v := &visitor{c: c}
		_, sid := v.must("n1", fmt.Sprintf("/set?k=%d", i))
		vs, ids[sid] = append(vs, v), true
	}
	c.procs["n1"].kill()
	read := func(v *visitor, id string) {
		t.Helper()
		for range 100 {
			code, body, _ := v.do(id, "/get")
			if code == http.StatusOK {
				return
			}
			if code != http.StatusServiceUnavailable {
				t.Fatalf("read via %s: %d %s", id, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("read via %s: unavailable", id)
	}
	for i, v := range vs {
		read(v, []string{"n2", "n3"}[i%2])
		read(v, []string{"n3", "n2"}[i%2])
		read(v, []string{"n2", "n3"}[i%2])
	}
	byN2, byN3 := c.events("n2", "taken", core.ReasonFailover), c.events("n3", "taken", core.ReasonFailover)
	for id := range ids {
		if byN2[id]+byN3[id] != 1 {
			t.Errorf("session %s: %d failovers on n2, %d on n3; want one in all", id, byN2[id], byN3[id])
		}
	}
	if len(byN2)+len(byN3) != len(ids) {
		t.Fatalf("failovers of %d sessions, want %d", len(byN2)+len(byN3), len(ids))
	}
	// Handovers between the survivors (a session read through the node
	// that does not own it moves) are reported too; what n2 owns now goes
	// to n3 when n2 drains.
	st := c.mustStats("n2")
	if st.Sessions == 0 {
		t.Fatal("n2 owns no session to drain")
	}
	t.Logf("failovers: %d on n2, %d on n3; n2 drains %d sessions", len(byN2), len(byN3), st.Sessions)
	before := c.events("n3", "taken", core.ReasonHandover)
	c.procs["n2"].stop(t)
	for _, v := range vs {
		read(v, "n3")
	}
	after := c.events("n3", "taken", core.ReasonHandover)
	drained := 0
	for id, k := range after {
		if k-before[id] > 1 {
			t.Errorf("session %s handed to n3 %d times by the drain", id, k-before[id])
		}
		if k > before[id] {
			drained++
		}
	}
	if drained != st.Sessions {
		t.Fatalf("the drain handed over %d sessions, n2 owned %d", drained, st.Sessions)
	}
	if f := c.events("n3", "taken", core.ReasonFailover); len(f) != len(byN3) {
		t.Fatalf("failovers on n3 after the drain: %d, before %d", len(f), len(byN3))
	}
}
