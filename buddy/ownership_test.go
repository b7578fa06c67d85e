package buddy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/faultnet"
)

// parallel sends the paths of one session at once, path i through via[i],
// each with the browser's cookie; the browser keeps the cookie of the
// response that came last, as a browser does. It returns the status codes.
func (b *browser) parallel(via []*member, paths []string) []int {
	codes := make([]int, len(paths))
	var mu sync.Mutex
	var wg sync.WaitGroup
	cookie := b.cookie
	for i := range paths {
		wg.Go(func() {
			c := &browser{t: b.t, cookie: cookie}
			rec := c.do(via[i], paths[i])
			mu.Lock()
			defer mu.Unlock()
			codes[i] = rec.Code
			if c.cookie != cookie {
				b.cookie = c.cookie
			}
			if rec.Code == http.StatusOK {
				b.id = c.id
			}
		})
	}
	wg.Wait()
	return codes
}

// owner returns the member that owns session id.
func owner(ms []*member, id string) *member {
	for _, m := range live(ms) {
		if _, ok := m.mgr.Owned(id); ok {
			return m
		}
	}
	return nil
}

// Two requests of one session reach two nodes at once (a balancer with a
// stale view): the session moves between them, and both writes are kept;
// a write answered 503 is not lost either (it was never acknowledged).
func TestParallelRequestsOnTwoNodesKeepBothWrites(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	w.write(ms[0], "init", "1")
	const rounds = 100
	both := 0
	for i := range rounds {
		o := owner(ms, w.b.id)
		if o == nil {
			t.Fatalf("round %d: nobody owns %s", i, w.b.id)
		}
		other := ms[(indexOf(ms, o)+1+i%2)%len(ms)]
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		codes := w.b.parallel([]*member{o, other}, []string{"/set?" + a + "=x", "/set?" + b + "=y"})
		if codes[0] == http.StatusOK {
			w.acked[a] = "x"
		}
		if codes[1] == http.StatusOK {
			w.acked[b] = "y"
		}
		if codes[0] == http.StatusOK && codes[1] == http.StatusOK {
			both++
		}
		for _, c := range codes {
			if c != http.StatusOK && c != http.StatusServiceUnavailable {
				t.Fatalf("round %d: answered %v", i, codes)
			}
		}
		w.check(t, ms[i%len(ms)])
	}
	if both < rounds*99/100 {
		t.Fatalf("both writes acknowledged in %d of %d rounds, want at least 99%%", both, rounds)
	}
	t.Logf("both writes acknowledged in %d of %d rounds", both, rounds)
}

func indexOf(ms []*member, m *member) int {
	for i, x := range ms {
		if x == m {
			return i
		}
	}
	return -1
}

// Right after the owner died, two requests of its session reach the same
// survivor: they share one fetch, and both writes are kept.
func TestParallelRequestsAfterOwnerKilledShareOneFetch(t *testing.T) {
	ms := cluster(t, 3, func(c *Config) { fastTimers(c); c.DeadAfter, c.SuspectAfter = time.Minute, time.Minute })
	var ws []*writer
	for range 10 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(ms[0], "k0", "v0")
		ws = append(ws, w)
	}
	ms[0].kill()
	for i, w := range ws {
		via := ms[1+i%2]
		codes := w.b.parallel([]*member{via, via}, []string{"/set?a=1", "/set?b=2"})
		if codes[0] != http.StatusOK || codes[1] != http.StatusOK {
			t.Fatalf("session %d: answered %v", i, codes)
		}
		w.acked["a"], w.acked["b"] = "1", "2"
	}
	for _, w := range ws {
		for _, m := range live(ms) {
			w.check(t, m)
		}
	}
	fetched := uint64(0)
	for _, m := range ms[1:] {
		for src, n := range m.node.Stats().Fetches {
			if src != SourceNone {
				fetched += n
			}
		}
	}
	// One fetch per session from the dead owner's copy, and the moves of
	// the checks that followed; never two at once for the first requests.
	if st := ms[1].mgr.Stats().Fetched + ms[2].mgr.Stats().Fetched; st > fetched {
		t.Fatalf("managers installed %d fetched sessions, buddies fetched %d", st, fetched)
	}
}

// When the buddy is killed, the owner picks the next node at once: no
// commit is served with one copy, and every acknowledged write is on the
// new buddy.
func TestBuddyKilledNoCommitHasOneCopy(t *testing.T) {
	ms := cluster(t, 3, func(c *Config) { fastTimers(c); c.DeadAfter, c.SuspectAfter = time.Minute, time.Minute })
	n1, n2, n3 := ms[0], ms[1], ms[2]
	var ws []*writer
	for i := range 20 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(n1, "k", fmt.Sprint(i))
		ws = append(ws, w)
	}
	n2.kill() // n1's buddy; the others will not notice for a minute
	var slowest time.Duration
	for round := range 5 {
		for i, w := range ws {
			start := time.Now()
			if !w.write(n1, "k", fmt.Sprint(round*100+i)) {
				t.Fatalf("write refused after the buddy died")
			}
			slowest = max(slowest, time.Since(start))
		}
	}
	if d := n1.node.Stats().Degraded; d != 0 {
		t.Fatalf("%d commits served with one copy", d)
	}
	if b := n1.node.Stats().Buddy; b != "n3" {
		t.Fatalf("buddy %q, want n3", b)
	}
	for _, w := range ws {
		sameCopy(t, n1, n3, w.b.id)
	}
	t.Logf("slowest write after the buddy's death: %v", slowest)
}

// An owner cut off from the cluster while its session is taken over
// elsewhere cannot acknowledge a write of it once it is back: its buddy
// knows the newer epoch. Nothing acknowledged is lost.
func TestCutOffOwnerIsFenced(t *testing.T) {
	ms, fn := faultyCluster(t, 3, fastTimers)
	n1, n2 := ms[0], ms[1]
	w := &writer{b: browser{t: t}, acked: map[string]string{}}
	w.write(n1, "a", "1")
	old := w.b.cookie
	fn.Partition([]string{"n1"}, []string{"n2", "n3"})
	waitFor(t, "n2 sees n1 dead", func() bool { return !n2.node.alive("n1") })
	// The balancer sends the user to n2, which takes the session over from
	// its copy (epoch 2).
	if !w.write(n2, "b", "2") {
		t.Fatal("write refused on n2")
	}
	fn.Heal()
	waitRing(t, ms)
	// A request with the cookie from before reaches n1 again.
	stale := &writer{b: browser{t: t, cookie: old}, acked: map[string]string{}}
	stale.write(n1, "c", "3")
	if stale.acked["c"] == "3" {
		w.acked["c"] = "3" // acknowledged: it must have joined the current copy
	}
	for _, m := range ms {
		w.check(t, m)
	}
	if got := readAll(t, n2, w.b.cookie); got["b"] != "2" || got["a"] != "1" {
		t.Fatalf("session after the heal: %v", got)
	}
}

// A node whose cookie keys differ is loud: an ERROR line, a counter, and
// it is not used as a buddy.
func TestMisconfiguredPeerIsNotABuddy(t *testing.T) {
	var logs syncBuffer
	ms := cluster(t, 2, func(c *Config) {
		fastTimers(c)
		if c.ID == "n1" {
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		}
	})
	// n2 restarts with other cookie keys, as a process that generated its
	// own would.
	other := core.KeyPair{Hash: bytes.Repeat([]byte("x"), 32), Block: bytes.Repeat([]byte("y"), 32)}
	ms[1].kill()
	node, err := New(ms[1].cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	mgr, err := core.NewManager(core.Config{Keys: []core.KeyPair{other}, Replicator: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	waitFor(t, "mismatch seen", func() bool { return ms[0].node.Stats().ConfigMismatches > 0 })
	if b := ms[0].node.Stats().Buddy; b != "" {
		t.Fatalf("buddy %q, want none", b)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "cookie keys differ") {
		t.Fatalf("no ERROR line naming the cookie keys:\n%s", logs.String())
	}
	for _, p := range ms[0].node.Peers() {
		if p.ID == "n2" && p.Mismatch == "" {
			t.Fatalf("peer status does not say why: %+v", p)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// While a node drains, requests for its sessions that reach other nodes get
// the sessions (from it, or from its buddy once the handover began); none
// is a fresh session, none is lost.
func TestRequestsDuringDrainGetTheirSession(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	var ws []*writer
	for i := range 30 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(ms[0], "k", fmt.Sprint(i))
		ws = append(ws, w)
	}
	done := make(chan error)
	go func() { done <- ms[0].node.Shutdown(t.Context()) }()
	for round := 0; ; round++ {
		for i, w := range ws {
			via := ms[1+(i+round)%2]
			before := w.b.id
			if !w.write(via, fmt.Sprintf("r%d", round), "x") {
				continue // a 503 while the session moves: retried next round
			}
			if w.b.id != before {
				t.Fatalf("session %d replaced by a fresh one during the drain", i)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			ms[0].gone.Store(true)
			for _, w := range ws {
				for _, m := range live(ms) {
					w.check(t, m)
				}
			}
			return
		default:
		}
		if round > 1000 {
			t.Fatal("drain did not end")
		}
	}
}

// A buddy that stops answering without closing its connections (a paused
// process, a stalled link) is replaced once it is found dead: the commits
// waiting on it are acknowledged by the next node, none degrades.
func TestStalledBuddyReplacedBeforeCommitsDegrade(t *testing.T) {
	ms, fn := faultyCluster(t, 3, func(c *Config) { fastTimers(c); c.ReplicationTimeout = 3 * time.Second })
	n3 := ms[2] // its buddy is n1
	var ws []*writer
	for i := range 10 {
		w := &writer{b: browser{t: t}, acked: map[string]string{}}
		w.write(n3, "k", fmt.Sprint(i))
		ws = append(ws, w)
	}
	for _, o := range []string{"n2", "n3"} {
		fn.Set(o, "n1", faultnet.Stall)
		fn.Set("n1", o, faultnet.Stall)
	}
	for round := range 3 {
		for i, w := range ws {
			if !w.write(n3, "k", fmt.Sprint(round*100+i)) {
				t.Fatal("write refused while n1 is stalled")
			}
		}
	}
	if d := n3.node.Stats().Degraded; d != 0 {
		t.Fatalf("%d commits served with one copy", d)
	}
	fn.Heal()
}

// Once a draining node's buddy took its sessions over, the draining node's
// own records are stale: it hands none of them out, even to the buddy, and
// a session that ended on the buddy after the takeover does not come back
// with its old cookie (the soak's undone logout in the join scenario).
func TestTakenOverSessionsDoNotComeBack(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	user := browser{t: t}
	if rec := user.do(ms[0], "/set?k=v"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	id, cookie := user.id, user.cookie
	to := ms[0].node.sender.buddy()
	if to.ID != "n2" {
		t.Fatalf("n1's buddy is %s", to.ID)
	}
	// n1 hands everything to n2 but does not stop yet (as a drain does
	// until it has told its peers).
	ms[0].node.draining.Store(true)
	if err := ms[0].node.handOverAll(t.Context(), to); err != nil {
		t.Fatal(err)
	}
	if _, owned := ms[0].mgr.Owned(id); owned {
		t.Fatal("n1 still owns a session its buddy took over")
	}
	if rep := ms[0].node.handOver("n2", ms[1].node.incarnation, id); rep.Status == wire.FetchFound {
		t.Fatal("n1 handed a session it gave up to its buddy")
	}
	// The user logs out on n2, then comes back with the old cookie on
	// every node.
	if rec := user.do(ms[1], "/logout"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	// A stale copy elsewhere: n3 holds one from n1, which is draining.
	now := time.Now()
	ms[2].node.backups.apply("n1", ms[0].node.incarnation, wire.Record{Kind: wire.KindFull, Change: &core.Change{
		ID: id, Version: 1, Epoch: 1, Full: true, Created: now, Accessed: now, Set: []core.Attr{{Key: "k", Value: []byte(`"v"`)}}}})
	for _, m := range ms {
		old := browser{t: t, cookie: cookie}
		old.do(m, "/")
		if old.id == id {
			t.Fatalf("the logged-out session is served again on %s", m.cfg.ID)
		}
	}
}

// A node that asked for a session and gave up waiting for the answer (a
// loaded machine) asks again: the node that gave it the session gives it
// once more, rather than answer that it holds none (the session was on
// neither node, its buddy's copy dropped: the property test lost it).
func TestHandoverAnswerLostIsGivenAgain(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	user := browser{t: t}
	user.do(ms[1], "/set?k=v")
	id := user.id
	// n3 asks n2, which gives the session up; the answer never arrives.
	if rep := ms[1].node.handOver("n3", ms[2].node.incarnation, id); rep.Status != wire.FetchFound {
		t.Fatalf("n2 answered %v", rep.Status)
	}
	if _, owned := ms[1].mgr.Owned(id); owned {
		t.Fatal("n2 still owns the session it gave up")
	}
	// The user's next request reaches n3, which asks again.
	if got := readAll(t, ms[2], user.cookie); got["k"] != "v" {
		t.Fatalf("through n3: %v: the session was lost with the answer", got)
	}
	// Another node asking is sent to n3, which has it now.
	if got := readAll(t, ms[0], user.cookie); got["k"] != "v" {
		t.Fatalf("through n1: %v", got)
	}
}

// An answer that comes after the asking fetch gave up is not lost: the
// node it went to takes the session when it comes.
func TestLateHandoverAnswerIsTaken(t *testing.T) {
	ms := cluster(t, 3, func(c *Config) {
		fastTimers(c)
		if c.ID == "n3" {
			c.ReplicationTimeout = 300 * time.Millisecond // gives up before n2 answers
		}
	})
	user := browser{t: t}
	user.do(ms[1], "/set?k=v")
	id := user.id
	// A request on n2 holds the session: n2 hands it over only after
	// waiting for it (half its replication timeout, a second).
	req := httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
	req.AddCookie(&http.Cookie{Name: "tandem", Value: user.cookie})
	held := ms[1].mgr.Load(req)
	defer held.Release()
	if _, code, _ := read(t, ms[2], user.cookie); code != http.StatusServiceUnavailable {
		t.Fatalf("n3 answered %d while n2 held the session, want 503", code)
	}
	waitFor(t, "n3 to take the session handed over late", func() bool {
		_, owned := ms[2].mgr.Owned(id)
		return owned
	})
	if got := readAll(t, ms[2], user.cookie); got["k"] != "v" {
		t.Fatalf("through n3: %v", got)
	}
}

// storedOnN1 stores k=v in a new session on n1, whose buddy must be n2,
// and returns the browser and the session's ID.
func storedOnN1(t *testing.T, ms []*member) (browser, string) {
	t.Helper()
	user := browser{t: t}
	if rec := user.do(ms[0], "/set?k=v"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	if b := ms[0].node.sender.buddy(); b.ID != "n2" {
		t.Fatalf("n1's buddy is %s", b.ID)
	}
	return user, user.id
}

// The owner's buddy is the one other node that can hand a session out.
// Here it did (it took the owner for dead, as a starved machine's pings
// time out), to n3; then n4 asks the owner, which lives. The owner's move
// is refused by its buddy, and n4 is sent to n3: one owner, not two under
// one epoch (the property test's fork).
func TestHandoverAfterBuddyHandedOutGoesToTaker(t *testing.T) {
	ms := cluster(t, 4, fastTimers)
	user, id := storedOnN1(t, ms)
	rep := ms[1].node.handOutCopy(id, "n1", "n3")
	if rep.Status != wire.FetchFound {
		t.Fatalf("n2 did not hand its copy out: %v", rep.Status)
	}
	rep.Copy.Epoch++
	if err := ms[2].mgr.Install(rep.Copy); err != nil {
		t.Fatal(err)
	}
	got := ms[0].node.handOver("n4", ms[3].node.incarnation, id)
	if got.Status != wire.FetchRedirect || got.Redirect != "n3" {
		t.Fatalf("n1 answered %v (redirect %q), want a redirect to n3", got.Status, got.Redirect)
	}
	if _, owned := ms[0].mgr.Owned(id); owned {
		t.Fatal("n1 still owns the session its buddy handed out")
	}
	if n := ms[0].node.Stats().MovesRefused; n != 1 {
		t.Fatalf("MovesRefused = %d, want 1", n)
	}
	if got := readAll(t, ms[3], user.cookie); got["k"] != "v" {
		t.Fatalf("through n4: %v", got)
	}
	owners := 0
	for _, m := range ms {
		if _, ok := m.mgr.Owned(id); ok {
			owners++
		}
	}
	if owners != 1 {
		t.Fatalf("%d owners", owners)
	}
}

// The other order: the owner hands the session to n3 first. Its buddy's
// copy becomes a fence for n3 before n3 gets the session, so the buddy,
// asked next by a node that believes the owner dead, or taking the copy
// for itself, sends the asker to n3 and hands nothing out.
func TestHandoverFencesTheBuddysCopy(t *testing.T) {
	ms := cluster(t, 4, fastTimers)
	user := browser{t: t}
	if rec := user.do(ms[0], "/set?k=v"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	id := user.id
	if rep := ms[0].node.handOver("n3", ms[2].node.incarnation, id); rep.Status != wire.FetchFound {
		t.Fatalf("n1 answered %v", rep.Status)
	}
	e, ok := ms[1].node.backups.lookup(id)
	if !ok || !e.fence || e.holder != "n3" {
		t.Fatalf("n2 holds %+v (%v), want a fence for n3", e, ok)
	}
	if rep := ms[1].node.handOutCopy(id, "n1", "n4"); rep.Status != wire.FetchRedirect || rep.Redirect != "n3" {
		t.Fatalf("n2 handing its copy to n4: %v %q, want a redirect to n3", rep.Status, rep.Redirect)
	}
	if rep := ms[1].node.takeLocal(id); rep.Status != wire.FetchRedirect || rep.Redirect != "n3" {
		t.Fatalf("n2 taking its copy: %v %q, want a redirect to n3", rep.Status, rep.Redirect)
	}
	// n1's stale records are refused by the fence.
	if out, _ := ms[1].node.backups.apply("n1", ms[0].node.incarnation, wire.Record{Kind: wire.KindDelta, Change: &core.Change{ID: id, Base: 1, Version: 2, Epoch: 1}}); out != fenced {
		t.Fatalf("n1's stale delta: outcome %d, want fenced", out)
	}
}

// A node that is closing (its context ended, its server not yet closed:
// Close cancels the one before it closes the other) cannot ping anyone.
// Asked then for a backup copy whose owner lives, it must not take its
// failed ping for the owner's death and hand the copy out: the owner's
// newer writes would be lost and the session forked (the chaos soak's
// join, run 2 of seed 5000000: a draining node, its stream already cut
// before the owner's last delta, handed out a version older than the one
// the owner had acknowledged).
func TestClosingNodeDoesNotHandOutALiveOwnersCopy(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	_, id := storedOnN1(t, ms)
	ms[1].node.cancel() // n2 begins to close
	if rep := ms[1].node.handOver("n3", ms[2].node.incarnation, id); rep.Status != wire.FetchRedirect || rep.Redirect != "n1" {
		t.Fatalf("closing n2 asked by n3: %v (redirect %q), want a redirect to n1", rep.Status, rep.Redirect)
	}
	if rep := ms[1].node.takeLocal(id); rep.Status != wire.FetchRedirect || rep.Redirect != "n1" {
		t.Fatalf("closing n2 taking its copy: %v (redirect %q), want a redirect to n1", rep.Status, rep.Redirect)
	}
	if _, owned := ms[0].mgr.Owned(id); !owned {
		t.Fatal("n1 no longer owns the session")
	}
}

// A former buddy's copy stops where the owner switched away from it. The
// owner writes on to its new buddy and dies before the former one dropped
// its copies: a node that asks the former buddy first (it gave the session
// to it once) is handed its older copy. The search must go on to the
// owner's buddy and keep the newest copy, not the first one.
func TestFormerBuddysOlderCopyDoesNotWin(t *testing.T) {
	ms := cluster(t, 4, fastTimers)
	n1, n2, n3, n4 := ms[0], ms[1], ms[2], ms[3]
	user := browser{t: t}
	for _, step := range []struct {
		m    *member
		path string
	}{{n2, "/set?k=v1"}, {n4, "/set?a=1"}, {n3, "/set?b=1"}} { // n2 gives it to n4, n4 to n3
		if rec := user.do(step.m, step.path); rec.Code != 200 {
			t.Fatalf("%s %s: %d", step.m.cfg.ID, step.path, rec.Code)
		}
	}
	id := user.id
	if _, owned := n3.mgr.Owned(id); !owned {
		t.Fatal("n3 does not own the session")
	}
	if to, _, moved := n2.node.moves.get(id); !moved || to != "n4" {
		t.Fatalf("n2 gave the session to %q (%v), want n4", to, moved)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n3.node.sender.flush(ctx); err != nil {
		t.Fatal(err)
	}
	stale, from, ok := n4.node.Backup(id)
	if !ok || from != "n3" {
		t.Fatalf("n4 holds no copy from n3 (%v, from %q)", ok, from)
	}
	// n4 drains: n3 and n2 move n3's buddy to n1.
	n4.node.draining.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for n3.node.sender.buddy().ID != "n1" || n2.node.view.buddyOf("n3") != "n1" {
		if time.Now().After(deadline) {
			t.Fatalf("n3's buddy: %q in its sender, %q in n2's ring", n3.node.sender.buddy().ID, n2.node.view.buddyOf("n3"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rec := user.do(n3, "/set?k=v2"); rec.Code != 200 {
		t.Fatalf("n3 /set?k=v2: %d", rec.Code)
	}
	// The former buddy still holds the copy from before the switch (its
	// release may have come meanwhile: it is put back).
	stale.Full = true
	if _, _, ok := n4.node.Backup(id); !ok {
		if out, _ := n4.node.backups.apply("n3", n4.node.view.incarnation("n3"), wire.Record{Kind: wire.KindFull, Change: stale}); out == fenced {
			t.Fatal("n4 refused the stale copy back")
		}
	}
	old, _, oldOK := n4.node.Backup(id)
	newest, _, newOK := n1.node.Backup(id)
	if !oldOK || !newOK || old.Version >= newest.Version {
		t.Fatalf("n4's copy (%v) is not older than n1's (%v)", oldOK, newOK)
	}
	n3.kill()
	if got := readAll(t, n2, user.cookie); got["k"] != "v2" || got["b"] != "1" {
		t.Fatalf("through n2 after n3 died: %v, want k=v2 (n4's older copy won)", got)
	}
}

// backups.move in every state a copy can be in.
func TestBackupsMove(t *testing.T) {
	const now = int64(1_700_000_000_000_000_000)
	full := func(owner string, epoch uint64) wire.Record {
		return wire.Record{Kind: wire.KindFull, Change: &core.Change{ID: "s", Version: 3, Epoch: epoch, Full: true, Created: time.Unix(0, now), Accessed: time.Unix(0, now)}}
	}
	tests := []struct {
		name       string
		setup      func(b *backups)
		from       string
		epoch      uint64
		to         string
		want       outcome
		wantHolder string
		fence      string // the fence's holder afterwards; "" to skip
	}{
		{"no copy: a fence from nothing", func(*backups) {}, "n1", 2, "n3", applied, "", "n3"},
		{"the owner's copy", func(b *backups) { b.apply("n1", 1, full("n1", 2)) }, "n1", 2, "n3", applied, "", "n3"},
		{"an older copy", func(b *backups) { b.apply("n1", 1, full("n1", 1)) }, "n1", 2, "n3", applied, "", "n3"},
		{"handed out already", func(b *backups) { b.apply("n1", 1, full("n1", 2)); b.handOut("s", "n1", "n4") }, "n1", 2, "n3", fenced, "n4", "n4"},
		{"the same move again", func(b *backups) { b.move("n1", "s", 2, "n3", "n2", now) }, "n1", 2, "n3", ignored, "", "n3"},
		{"a newer owner's copy", func(b *backups) { b.apply("n4", 1, full("n4", 3)) }, "n1", 2, "n3", fenced, "n4", ""},
		{"another owner, same epoch", func(b *backups) { b.apply("n4", 1, full("n4", 2)) }, "n1", 2, "n3", fenced, "n4", ""},
		{"to this node: the copy stays", func(b *backups) { b.apply("n1", 1, full("n1", 2)) }, "n1", 2, "n2", applied, "", ""},
		{"to this node, handed out already", func(b *backups) { b.apply("n1", 1, full("n1", 2)); b.handOut("s", "n1", "n4") }, "n1", 2, "n2", fenced, "n4", "n4"},
		{"ended", func(b *backups) {
			b.apply("n1", 1, full("n1", 2))
			b.apply("n1", 1, wire.Record{Kind: wire.KindRemove, Change: &core.Change{ID: "s", Epoch: 2, Removed: true}})
		}, "n1", 2, "n3", fenced, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackups(0)
			tt.setup(b)
			got, f := b.move(tt.from, "s", tt.epoch, tt.to, "n2", now)
			if got != tt.want || f.Holder != tt.wantHolder {
				t.Fatalf("move = %d, holder %q; want %d, %q", got, f.Holder, tt.want, tt.wantHolder)
			}
			if tt.fence != "" {
				if e, ok := b.lookup("s"); !ok || !e.fence || e.holder != tt.fence {
					t.Fatalf("afterwards %+v (%v), want a fence for %s", e, ok, tt.fence)
				}
			}
			if b.len() != 0 && got == applied && tt.to != "n2" {
				t.Fatalf("%d copies left after the move", b.len())
			}
		})
	}
}

// The owner hands the session to its own buddy, and the answer is lost
// (the owner is killed as it answers, as a draining node closes): the
// buddy still has its copy and takes it, rather than log the user out.
func TestHandoverToBuddyAnswerLostKeepsItsCopy(t *testing.T) {
	ms := cluster(t, 3, fastTimers)
	user := browser{t: t}
	if rec := user.do(ms[0], "/set?k=v"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	if b := ms[0].node.sender.buddy(); b.ID != "n2" {
		t.Fatalf("n1's buddy is %s", b.ID)
	}
	if rep := ms[0].node.handOver("n2", ms[1].node.incarnation, user.id); rep.Status != wire.FetchFound {
		t.Fatalf("n1 answered %v", rep.Status)
	}
	ms[0].kill()
	waitFor(t, "n2 to find n1 dead", func() bool { return !ms[1].node.view.answers("n1") })
	if got := readAll(t, ms[1], user.cookie); got["k"] != "v" {
		t.Fatalf("through n2: %v: the session was lost with the answer", got)
	}
}
