package buddy

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/faultnet"
)

// readAll returns the session's attributes as the member serves them.
func readAll(t testing.TB, m *member, cookie string) map[string]string {
	t.Helper()
	out, _, _ := read(t, m, cookie)
	return out
}

// read returns the session's attributes as the member serves them, the
// status of the answer and the session ID the request saw.
func read(t testing.TB, m *member, cookie string) (out map[string]string, code int, id string) {
	t.Helper()
	out = map[string]string{}
	h := m.mgr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		id = s.ID()
		for _, k := range s.Keys() {
			v, _, _ := core.Get[string](s, k)
			out[k] = v
		}
	}))
	b := &browser{t: t, cookie: cookie}
	code = b.do(&member{h: h}, "/").Code
	return out, code, id
}

// live returns the members that are not dead.
func live(ms []*member) []*member {
	var out []*member
	for _, m := range ms {
		if !m.dead() {
			out = append(out, m)
		}
	}
	return out
}

// writer is a client that keeps writing to its session and remembers what
// was acknowledged.
type writer struct {
	b     browser
	acked map[string]string
}

// write sets k=v through m; a 200 from a member that was not killed while
// the request ran counts as acknowledged.
func (w *writer) write(m *member, k, v string) bool {
	deadBefore := m.dead()
	before := w.b.id
	rec := w.b.do(m, "/set?"+k+"="+v)
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		fmt.Fprintf(os.Stderr, "write %s=%s via %s: %d session %s -> %s\n", k, v, m.node.ID(), rec.Code, before, w.b.id)
	}
	if rec.Code != http.StatusOK || deadBefore || m.dead() {
		return false
	}
	w.acked[k] = v
	return true
}

// fataler is what check needs of a testing.T or a rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// check fails unless every acknowledged write is readable through m. A
// 503 (the cluster could not tell in time: a busy machine) is asked again,
// for a while; a session served without an acknowledged write is a loss.
func (w *writer) check(t fataler, m *member) {
	t.Helper()
	var got map[string]string
	var code int
	var id string
	for range 100 {
		if got, code, id = read(w.b.t, m, w.b.cookie); code != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Fatalf("through %s: answered %d for session %s", m.node.ID(), code, w.b.id)
	}
	for k, v := range w.acked {
		if got[k] != v {
			t.Fatalf("through %s: %s=%q, acknowledged %q (session %s, served %q: %v)", m.node.ID(), k, got[k], v, w.b.id, id, got)
		}
	}
}

func TestPrimaryKilledUnderConcurrentWrites(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	n1 := ms[0]
	var mu sync.Mutex
	var ws []*writer
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for c := range 8 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		ws = append(ws, w)
		wg.Go(func() {
			for i := range 60 {
				if i == 20 && c == 0 {
					mu.Lock()
					n1.kill()
					mu.Unlock()
					close(killed)
				}
				target := n1
				select {
				case <-killed:
					target = ms[1+i%2] // the balancer sends users elsewhere
				default:
				}
				w.write(target, fmt.Sprintf("k%d", i%7), fmt.Sprint(i))
			}
		})
	}
	wg.Wait()
	for _, w := range ws {
		if len(w.acked) == 0 {
			t.Fatal("no write acknowledged")
		}
		for _, m := range live(ms) {
			w.check(t, m)
		}
	}
	st := ms[1].node.Stats()
	if st.Failovers+ms[2].node.Stats().Failovers == 0 {
		t.Fatalf("no failover counted: %+v", st.Fetches)
	}
}

func TestBuddyKilledThenSecondFailure(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	var ws []*writer
	for i := range 20 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(n1, "k", fmt.Sprint(i))
		ws = append(ws, w)
	}
	n2.kill() // n1's buddy
	waitFor(t, "n1 picks n3 as buddy", func() bool { return n1.node.Stats().Buddy == "n3" })
	if err := n1.node.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(n3.node.BackupIDs("n1")); got != 20 {
		t.Fatalf("new buddy holds %d of n1's 20 sessions", got)
	}
	if n1.node.Stats().TransferSessions < 20 {
		t.Fatalf("transfer counted %d sessions", n1.node.Stats().TransferSessions)
	}
	n1.kill() // the second failure
	for _, w := range ws {
		w.check(t, n3)
	}
}

func TestJoinGetsFullCopy(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	n3.kill()
	waitRing(t, ms)
	// n2's buddy is now n1 (ring n1, n2).
	var ws []*writer
	for i := range 10 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(n2, "k", fmt.Sprint(i))
		ws = append(ws, w)
	}
	if got := len(n1.node.BackupIDs("n2")); got != 10 {
		t.Fatalf("n1 holds %d copies of n2's sessions", got)
	}
	n3.restart(t) // joins (empty): n2's successor again
	waitRing(t, ms)
	waitFor(t, "n2 sends n3 its sessions", func() bool { return len(n3.node.BackupIDs("n2")) == 10 })
	waitFor(t, "n1 drops its copies", func() bool { return len(n1.node.BackupIDs("n2")) == 0 })
	n2.kill()
	for _, w := range ws {
		w.check(t, n3)
	}
}

func TestRollingRestartLosesNothing(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	var ws []*writer
	for i := range 30 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(ms[i%3], "start", fmt.Sprint(i))
		ws = append(ws, w)
	}
	for round, m := range ms {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := m.node.Shutdown(ctx); err != nil {
			t.Fatalf("drain %s: %v", m.node.ID(), err)
		}
		cancel()
		m.mgr.Close()
		m.gone.Store(true)
		waitRing(t, ms)
		// Users keep working on the remaining nodes.
		for i, w := range ws {
			others := live(ms)
			if !w.write(others[i%len(others)], fmt.Sprintf("r%d", round), fmt.Sprint(i)) {
				t.Fatalf("write refused during round %d", round)
			}
		}
		m.restart(t)
		waitRing(t, ms)
	}
	for _, w := range ws {
		for _, m := range ms {
			w.check(t, m)
		}
	}
	if ms[0].node.Stats().Drains != 0 { // a fresh node after restart
		t.Fatal("restarted node reports a drain")
	}
}

func TestPartitionHealNoStaleRead(t *testing.T) {
	ms, fn := faultyCluster(t, 3, fastTimers)
	n1, n2 := ms[0], ms[1]
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	w.write(n1, "v", "1")
	fn.Partition([]string{"n1"}, []string{"n2", "n3"})
	waitFor(t, "n2 sees n1 dead", func() bool { return !n2.node.alive("n1") })
	// The balancer cannot reach n1 either: the user moves to n2.
	if !w.write(n2, "v", "2") {
		t.Fatal("write on n2 refused")
	}
	fn.Heal()
	waitRing(t, ms)
	// A stray request reaches n1, which still holds version 1.
	w.check(t, n1)
	w.write(n1, "v", "3")
	w.check(t, n2)
	w.check(t, ms[2])
}

func TestUserBouncedBetweenNodesKeepsWrites(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	for i := range 30 {
		if !w.write(ms[i%3], fmt.Sprintf("k%d", i), fmt.Sprint(i)) {
			t.Fatalf("write %d refused", i)
		}
	}
	for _, m := range ms {
		w.check(t, m)
	}
	moves := uint64(0)
	for _, m := range ms {
		moves += m.node.Stats().OwnershipMoves
	}
	if moves < 20 {
		t.Fatalf("only %d ownership moves for 30 bounced requests", moves)
	}
}

func TestUnknownSessionIsFreshAndCheap(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	w.write(ms[0], "k", "v")
	saved := w.b.cookie
	w.b.do(ms[0], "/logout")
	// The logged-out cookie replayed to another node: nobody has the session.
	stale := &browser{t: t, cookie: saved}
	for range 5 {
		stale.cookie = saved
		rec := stale.do(ms[1], "/")
		if rec.Code != 200 {
			t.Fatalf("code %d", rec.Code)
		}
	}
	// Anonymous visitors' cookies (issued before anything was stored) never
	// make a node search the cluster.
	anon := &browser{t: t}
	for range 5 {
		anon.do(ms[1], "/")
		anon.do(ms[2], "/")
	}
	if n := ms[1].node.Stats().Fetches[SourceNone]; n > 1 {
		t.Fatalf("%d cluster-wide lookups for one unknown ID", n)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The owner dies and a request for its session reaches a node that is not
// its buddy before anyone noticed the death: the buddy, which still believes
// the owner alive, checks and hands its copy over.
func TestFailoverBeforeDetection(t *testing.T) {
	ms := cluster(t, 3, func(c *Config) { c.DeadAfter, c.SuspectAfter = time.Minute, time.Minute })
	n1, n3 := ms[0], ms[2] // n1's buddy is n2
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	w.write(n1, "k", "v")
	n1.kill()
	if !n3.node.alive("n1") || !ms[1].node.alive("n1") {
		t.Fatal("death detected already; the test needs it undetected")
	}
	w.check(t, n3)
}

// A drain whose buddy stops answering hands the sessions to the next node.
func TestShutdownFallsBackToNextBuddy(t *testing.T) {
	ms, fn := faultyCluster(t, 3, func(c *Config) {
		fastTimers(c)
		c.ReplicationTimeout, c.SuspectAfter, c.DeadAfter = 200*time.Millisecond, time.Minute, time.Minute
	})
	n1, n3 := ms[0], ms[2]
	var ws []*writer
	for i := range 5 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(n1, "k", fmt.Sprint(i))
		ws = append(ws, w)
	}
	fn.Set("n1", "n2", faultnet.Stall) // n1's buddy stops answering n1
	defer fn.Heal()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := n1.node.Shutdown(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	n1.mgr.Close()
	n1.gone.Store(true)
	if got := n3.mgr.Len(); got < 5 {
		t.Fatalf("n3 owns %d sessions after the drain, want the 5 of n1", got)
	}
	for _, w := range ws {
		w.check(t, n3)
	}
}

// GoString keeps rapid's logs short.
func (w *writer) GoString() string { return fmt.Sprintf("writer(%s, %v)", w.b.id, w.acked) }
