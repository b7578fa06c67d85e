package buddy

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// While a node drains, parallel requests for its sessions at its buddy (the
// balancer sends them there once the node's app server closed) each get
// their session: none is fresh, no acknowledged write is lost. The buddy
// both fetches these sessions from the draining node and promotes them
// from its copies, at once.
func TestParallelRequestsAtTheBuddyDuringDrain(t *testing.T) {
	for range 5 {
		ms := cluster(t, 3, fastTimers)
		var ws []*writer
		for i := range 24 {
			w := &writer{b: browser{t: t}, acked: map[string]string{}}
			w.write(ms[0], "k", fmt.Sprint(i))
			ws = append(ws, w)
		}
		done := make(chan error, 1)
		go func() { done <- ms[0].node.Shutdown(t.Context()) }()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var fresh []int
		for i, w := range ws {
			wg.Go(func() {
				for round := range 40 {
					before := w.b.id
					if !w.write(ms[1], fmt.Sprintf("r%d", round), "x") {
						continue
					}
					if w.b.id != before {
						mu.Lock()
						fresh = append(fresh, i)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		ms[0].gone.Store(true)
		if len(fresh) > 0 {
			t.Fatalf("sessions %v replaced by fresh ones at the buddy during the drain", fresh)
		}
		for _, w := range ws {
			for _, m := range live(ms) {
				w.check(t, m)
			}
		}
		for _, m := range ms[1:] {
			m.kill()
		}
	}
}

// A session that moved away while its owner was resending every session
// to its buddy (a drain's last copy, a state transfer) is not "gone" for
// the buddy: the resend says nothing of it, so the buddy keeps what the
// move left (a fence for the new owner, or, when the buddy took the
// session itself, its copy to take should the owner's answer be lost).
// Before, the resend sent a removal that dropped that copy: a drain that
// ended before its answer left the session nowhere, and the user got a
// fresh session on the buddy (the rolling-restart failure). A session that
// ended here (a logout) still gets its removal, under its epoch.
func TestResendSaysNothingOfSessionsThatMoved(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	n1, n2, n3 := ms[0], ms[1], ms[2] // n1's buddy is n2
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	if !w.write(n1, "k", "1") {
		t.Fatal("write refused")
	}
	id := w.b.id
	if !w.write(n3, "k", "2") { // moves it to n3: n2 holds a fence for n3
		t.Fatal("write via n3 refused")
	}
	if recs := n1.node.fullCopies([]string{id}); len(recs) != 0 {
		t.Fatalf("a resend of the moved session sends %d records (kind %v), want none", len(recs), recs[0].Kind)
	}
	n1.node.sender.addResync([]string{id}) // as a resend of every session would
	if err := n1.node.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e, ok := n2.node.backups.lookup(id); !ok || !e.fence || e.ended {
		t.Fatalf("n2 holds %+v (%v) after the resend, want its fence for n3", e, ok)
	}
	w.check(t, n2)

	// A logout on n1: its resend is the removal, under the session's epoch.
	out := &writer{b: browser{t: t}, acked: map[string]string{}}
	if !out.write(n1, "k", "1") {
		t.Fatal("write refused")
	}
	ended := out.b.id
	if rec := out.b.do(n1, "/logout"); rec.Code != 200 {
		t.Fatalf("logout: %d", rec.Code)
	}
	recs := n1.node.fullCopies([]string{ended})
	if len(recs) != 1 || recs[0].Kind != wire.KindRemove || recs[0].Change.Epoch == 0 {
		t.Fatalf("a resend of a session that ended here: %+v, want one removal under its epoch", recs)
	}
}

// A node that drained and restarted replicates to its buddy before the
// buddy has pinged its new run: the buddy still has it as left, under its
// previous incarnation. The copies must be recorded under the run that sent
// them, so that a request for one of its sessions through the buddy is
// sent to the living owner, not served from the buddy's copy as if the
// owner had restarted empty (two owners; the rolling-restart run whose
// logout was undone).
func TestCopiesFromARestartedOwnerNameItsNewRun(t *testing.T) {
	ms := cluster(t, 3, func(c *Config) {
		fastTimers(c)
		// No ping in the test's moments tells n1 of n3's new run.
		c.PingInterval, c.SuspectAfter, c.DeadAfter = 3*time.Second, 20*time.Second, 40*time.Second
	})
	n1, n3 := ms[0], ms[2] // n3's buddy is n1
	waitFor(t, "n3's buddy is n1", func() bool { return n3.node.Stats().Buddy == "n1" })
	if err := n3.node.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	n3.mgr.Close()
	waitFor(t, "n1 has n3 as left", func() bool { return !n1.node.view.answers("n3") })
	n3.restart(t)
	waitFor(t, "the new n3 has n1 as its buddy", func() bool { return n3.node.Stats().Buddy == "n1" })
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	if !w.write(n3, "k", "1") {
		t.Fatal("write on the new n3 refused")
	}
	if !w.write(n1, "k", "2") { // through the buddy
		t.Fatal("write via n1 refused")
	}
	if _, owned := n3.mgr.Owned(w.b.id); owned {
		t.Fatal("n3 still owns the session that n1 served from its copy: two owners")
	}
	if got := n1.node.Stats().Fetches[SourceOwner]; got == 0 {
		t.Fatalf("n1 did not get the session from its owner (fetches %v)", n1.node.Stats().Fetches)
	}
	w.check(t, n1)
	w.check(t, n3)
}

// The owner gives a session to the node that asked (its buddy turned its
// copy into a fence for that node), then stops before its answer arrives:
// the node asks again, and the buddy hands it the copy its fence kept.
// Before, the buddy answered "none" (a fence for the asker itself), and
// the user got a fresh session: the rolling-restart run where a draining
// node's connection closed under the answers.
func TestAnswerLostWhenTheOwnerStopsAfterAMove(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	n1, n2, n3 := ms[0], ms[1], ms[2] // n3's buddy is n1
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	if !w.write(n3, "k", "1") {
		t.Fatal("write refused")
	}
	id := w.b.id
	st, owned := n3.mgr.Owned(id)
	if !owned {
		t.Fatal("n3 does not own the session it served")
	}
	// n3 gives the session to n2: the move reaches n1 ...
	reply := n1.node.applyBatch("n3", []wire.Record{{Kind: wire.KindMove, Change: &core.Change{ID: id, Epoch: st.Epoch}, To: "n2"}})
	if len(reply.Fenced) != 0 {
		t.Fatalf("the move was fenced: %+v", reply)
	}
	// ... and n3 stops before n2 has the answer.
	n3.kill()
	waitFor(t, "n1 and n2 take n3 for dead", func() bool { return !n1.node.view.answers("n3") && !n2.node.view.answers("n3") })
	w.check(t, n2)
}
