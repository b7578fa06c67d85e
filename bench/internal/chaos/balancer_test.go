package chaos

import (
	"math/rand/v2"
	"testing"
	"time"
)

// fakeBalancer has three nodes, up since t0, and a clock the test moves.
func fakeBalancer(stale time.Duration) (*balancer, *time.Time) {
	now := time.Unix(1000, 0)
	b := newBalancer(stale)
	b.now = func() time.Time { return now }
	for _, id := range []string{"n1", "n2", "n3"} {
		b.addNode(id, id+":80")
		b.set(id, true)
	}
	now = now.Add(time.Hour)
	return b, &now
}

func TestBalancerStaleView(t *testing.T) {
	b, now := fakeBalancer(250 * time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	if got := b.pick(policySticky, "n2", 0, 0, rng); got != "n2" {
		t.Fatalf("sticky to n2: %s", got)
	}
	b.set("n2", false)
	// Within the stale time the balancer still believes n2 up.
	*now = now.Add(100 * time.Millisecond)
	if got := b.pick(policySticky, "n2", 0, 0, rng); got != "n2" {
		t.Fatalf("stale view: %s, want n2", got)
	}
	*now = now.Add(200 * time.Millisecond)
	if got := b.pick(policySticky, "n2", 0, 0, rng); got != "n3" {
		t.Fatalf("after the stale time: %s, want n3 (the next node)", got)
	}
	// A retry after a refusal goes to the next node not tried.
	if got := b.next("n3", map[string]bool{"n3": true, "n2": true}); got != "n1" {
		t.Fatalf("next after n3: %s", got)
	}
	if got := b.next("n3", map[string]bool{"n1": true, "n2": true, "n3": true}); got != "" {
		t.Fatalf("every node tried: %q", got)
	}
}

func TestBalancerPolicies(t *testing.T) {
	b, _ := fakeBalancer(0)
	rng := rand.New(rand.NewPCG(1, 2))
	// No route cookie: the user's home node.
	if got := b.pick(policySticky, "", 4, 0, rng); got != "n2" {
		t.Fatalf("home of user 4: %s", got)
	}
	// Split: the first request to the owner, the second to another node.
	if a, c := b.pick(policySplit, "n1", 0, 0, rng), b.pick(policySplit, "n1", 0, 1, rng); a != "n1" || c == "n1" {
		t.Fatalf("split: %s %s", a, c)
	}
	seen := map[string]bool{}
	for range 100 {
		seen[b.pick(policyNonSticky, "n1", 0, 0, rng)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("nonsticky reached %v", seen)
	}
	if err := validPolicy("round-robin"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func TestTallyBusiest(t *testing.T) {
	tl := newTally()
	tl.saw(1, "n2", "n3")
	tl.saw(2, "n2", "n3")
	tl.saw(3, "n1", "n2")
	tl.saw(4, "", "") // no owner reported: ignored
	if o, bk := tl.busiest([]string{"n1", "n2", "n3"}); o != "n2" || bk != "n3" {
		t.Fatalf("busiest %s %s", o, bk)
	}
	if o, _ := tl.busiest([]string{"n1", "n3"}); o != "n1" {
		t.Fatalf("busiest of n1, n3: %s", o)
	}
}

func TestKnownFailureTolerates(t *testing.T) {
	k := knownFailure{scenario: "kill9", tolerate: []string{"degraded"}}
	s := newSummary("kill9", true)
	s.add(&Result{Degraded: 4, Errors: map[string]int{}})
	if !k.tolerates(s) {
		t.Fatal("degraded not tolerated")
	}
	s.add(&Result{LostWrites: 1, Errors: map[string]int{}})
	if k.tolerates(s) {
		t.Fatal("a lost write tolerated by a degraded-only entry")
	}
	if !(knownFailure{scenario: "x"}).tolerates(s) {
		t.Fatal("an entry without a list tolerates everything")
	}
	for _, kf := range knownFailing() {
		if _, ok := func() (scenario, bool) {
			for _, sc := range scenarios() {
				if sc.name == kf.scenario {
					return sc, true
				}
			}
			return scenario{}, false
		}(); !ok || kf.reason == "" {
			t.Fatalf("knownFailing entry %q: no such scenario or no reason", kf.scenario)
		}
	}
}
