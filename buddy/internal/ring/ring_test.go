package ring

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestSuccessor(t *testing.T) {
	zones := map[string]string{"a": "z1", "b": "z1", "c": "z2", "d": "z2"}
	zone := func(id string) string { return zones[id] }
	flat := func(string) string { return "" }
	tests := []struct {
		ring []string
		id   string
		zone func(string) string
		want string
	}{
		{[]string{"a", "b", "c"}, "a", flat, "b"},
		{[]string{"a", "b", "c"}, "c", flat, "a"},
		{[]string{"a", "c"}, "b", flat, "c"}, // b is dead: placed where it would be
		{[]string{"a"}, "a", flat, ""},
		{[]string{"a"}, "b", flat, "a"},
		{[]string{"a", "b", "c", "d"}, "a", zone, "c"}, // another zone first
		{[]string{"a", "b", "c", "d"}, "b", zone, "c"},
		{[]string{"a", "b", "c", "d"}, "c", zone, "a"},
		{[]string{"a", "b", "c", "d"}, "d", zone, "a"},
		{[]string{"a", "b"}, "a", zone, "b"}, // one zone only: the plain successor
	}
	for _, tt := range tests {
		if got := Successor(tt.ring, tt.id, tt.zone); got != tt.want {
			t.Errorf("Successor(%v, %s) = %q, want %q", tt.ring, tt.id, got, tt.want)
		}
	}
}

// TestBuddyOfZones is the 4-node zone test on a table: every node's view
// of the ring, with peers in two zones and some of them dead.
func TestBuddyOfZones(t *testing.T) {
	zones := map[string]string{"n1": "a", "n2": "a", "n3": "b", "n4": "b"}
	all := []Peer{{ID: "n1", Zone: "a"}, {ID: "n2", Zone: "a"}, {ID: "n3", Zone: "b"}, {ID: "n4", Zone: "b"}}
	tests := []struct {
		self string
		dead []string
		want map[string]string // node -> its buddy as self sees it
	}{
		{"n1", nil, map[string]string{"n1": "n3", "n2": "n3", "n3": "n1", "n4": "n1"}},
		{"n4", nil, map[string]string{"n1": "n3", "n2": "n3", "n3": "n1", "n4": "n1"}},
		{"n1", []string{"n3"}, map[string]string{"n1": "n4", "n2": "n4", "n4": "n1", "n3": "n1"}},
		{"n2", []string{"n3", "n4"}, map[string]string{"n1": "n2", "n2": "n1"}}, // one zone left
		{"n1", []string{"n2", "n3", "n4"}, map[string]string{"n1": ""}},
	}
	for _, tt := range tests {
		clk := &clock{time.Unix(1000, 0)}
		tab := New(tt.self, zones[tt.self], all, clk.now)
		for _, p := range all {
			if p.ID != tt.self {
				tab.Heard(p.ID, 1, false, "")
			}
		}
		for _, id := range tt.dead {
			tab.Mark(id, Dead, 0)
		}
		for id, want := range tt.want {
			if got := tab.BuddyOf(id); got != want {
				t.Errorf("self %s, dead %v: buddy of %s = %q, want %q", tt.self, tt.dead, id, got, want)
			}
		}
	}
}

// TestTransitions walks one peer through its states; each step is an
// event at a time and the state it leaves the peer in.
func TestTransitions(t *testing.T) {
	const suspect, dead = time.Second, 3 * time.Second
	type step struct {
		at        time.Duration // since the start
		event     string        // heard, heard-draining, silent, left, rumour
		inc       uint64
		mismatch  string
		from, to  State
		restarted bool
		inRing    bool
	}
	steps := []step{
		{0, "heard", 7, "", Unknown, Alive, false, true},
		{suspect / 2, "silent", 0, "", Alive, Alive, false, true},
		{suspect, "silent", 0, "", Alive, Alive, false, true}, // quiet for suspect, but probed only now: failing since now
		{suspect + suspect, "silent", 0, "", Alive, Suspect, false, true},
		{suspect + dead, "silent", 0, "", Suspect, Dead, false, false},
		{4 * time.Second, "heard", 7, "", Dead, Alive, false, true},
		{5 * time.Second, "heard", 8, "", Alive, Alive, true, true},
		{6 * time.Second, "heard-draining", 8, "", Alive, Draining, false, false},
		{6 * time.Second, "heard", 8, "", Draining, Draining, false, false}, // a serving ping sent before the drain, late
		{6 * time.Second, "heard", 9, "", Draining, Alive, true, true},      // restarted
		{6 * time.Second, "heard-draining", 8, "", Alive, Draining, true, false},
		{6 * time.Second, "left", 7, "", Unknown, Unknown, false, false}, // a leave of another incarnation is stale
		{6 * time.Second, "left", 8, "", Draining, Left, false, false},
		{7 * time.Second, "heard-draining", 8, "", Left, Left, false, false}, // finishing its drain: still gone
		{8 * time.Second, "heard", 8, "", Left, Alive, false, true},          // serving after a leave: it did not leave
		{9 * time.Second, "heard", 8, "cookie keys differ", Alive, Alive, false, false},
		{10 * time.Second, "heard", 8, "", Alive, Alive, false, true},
		// A rumour of its death is refused while it answers this node...
		{10*time.Second + suspect/2, "rumour", 8, "", Unknown, Unknown, false, true},
		// ...and taken once it is quiet here too, until it answers.
		{12 * time.Second, "rumour", 8, "", Alive, Dead, false, false},
		{13 * time.Second, "heard", 8, "", Dead, Alive, false, true},
		{13*time.Second + suspect/2, "rumour", 7, "", Unknown, Unknown, false, true}, // an older run
		{15 * time.Second, "rumour", 8, "", Alive, Dead, false, false},
		{16 * time.Second, "heard", 10, "", Dead, Alive, true, true}, // a new run
	}
	clk := &clock{time.Unix(1000, 0)}
	t0 := clk.t
	tab := New("n1", "", []Peer{{ID: "n1"}, {ID: "n2", Addr: "x:1"}}, clk.now)
	for i, s := range steps {
		clk.t = t0.Add(s.at)
		var c Change
		switch s.event {
		case "heard", "heard-draining":
			c, _ = tab.Heard("n2", s.inc, s.event == "heard-draining", s.mismatch)
		case "silent":
			c = tab.Silent("n2", suspect, dead)
		case "left":
			c = tab.Mark("n2", Left, s.inc)
		case "rumour":
			c, _ = tab.Rumour("n2", s.inc, suspect)
		}
		if c.From != s.from || c.To != s.to || c.Restarted != s.restarted {
			t.Fatalf("step %d (%s at %v): %v -> %v restarted %v, want %v -> %v restarted %v", i, s.event, s.at, c.From, c.To, c.Restarted, s.from, s.to, s.restarted)
		}
		if got := tab.InRing("n2"); got != s.inRing {
			t.Fatalf("step %d (%s): in ring %v, want %v", i, s.event, got, s.inRing)
		}
	}
	if _, ok := tab.Heard("n9", 1, false, ""); ok {
		t.Fatal("an unknown peer was heard")
	}
}

func TestSetPeers(t *testing.T) {
	tab := New("n1", "", []Peer{{ID: "n2", Addr: "a:1"}, {ID: "n3", Addr: "a:2"}}, nil)
	tab.Heard("n2", 1, false, "")
	tab.Heard("n3", 1, false, "")
	added, moved, changed := tab.SetPeers([]Peer{{ID: "n1"}, {ID: "n2", Addr: "b:1"}, {ID: "n4", Addr: "a:4"}, {ID: string(make([]byte, 65))}}, 64)
	if !slices.Equal(added, []string{"n4"}) || !slices.Equal(moved, []string{"n2"}) || !changed {
		t.Fatalf("added %v moved %v changed %v", added, moved, changed)
	}
	if p, _ := tab.Peer("n2"); p.Addr != "b:1" {
		t.Fatalf("n2 at %s", p.Addr)
	}
	if tab.Answers("n3") || tab.InRing("n3") {
		t.Fatal("an undiscovered peer still answers")
	}
	if _, ok := tab.Heard("n3", 1, false, ""); !ok || tab.Answers("n3") {
		t.Fatal("an undiscovered peer came back by its traffic")
	}
	if got := tab.Pingable(); len(got) != 2 || got[0].ID != "n2" || got[1].ID != "n4" {
		t.Fatalf("pingable %v", got)
	}
	if _, _, changed := tab.SetPeers([]Peer{{ID: "n2", Addr: "b:1"}, {ID: "n4", Addr: "a:4"}}, 64); changed {
		t.Fatal("the same list changed something")
	}
}

func TestReachableAndRing(t *testing.T) {
	var ps []Peer
	for _, id := range []string{"n2", "n3", "n4", "n5"} {
		ps = append(ps, Peer{ID: id})
	}
	tab := New("n1", "", ps, nil)
	tab.Heard("n2", 1, false, "")
	tab.Heard("n3", 1, true, "")
	tab.Heard("n4", 1, false, "")
	tab.Mark("n4", Dead, 0)
	ids := func(ps []Peer) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"reachable", ids(tab.Reachable(nil)), []string{"n2", "n3", "n5"}}, // n5 unknown: asked all the same
		{"reachable but n2", ids(tab.Reachable(map[string]bool{"n2": true})), []string{"n3", "n5"}},
		{"ring peers", ids(tab.RingPeers()), []string{"n2"}},
		{"ring", tab.Ring(), []string{"n1", "n2"}},
	}
	for _, tt := range tests {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestProbeTargetsBounded: a round's probes stay within the neighbours and
// the extra ones however many peers there are, and every peer is probed
// by its two neighbours.
func TestProbeTargetsBounded(t *testing.T) {
	for _, n := range []int{2, 5, 12, 50, 200} {
		var ps []Peer
		for i := range n {
			ps = append(ps, Peer{ID: id(i)})
		}
		probedBy := map[string]int{}
		for i := range n {
			tab := New(id(i), "", ps, nil)
			if got := tab.ProbeTargets(1, 3, rand.New(rand.NewPCG(uint64(i), 1))); len(got) != n-1 {
				t.Fatalf("%d nodes: %s probes %d peers never heard from, want all %d", n, id(i), len(got), n-1)
			}
			for _, p := range ps {
				tab.Heard(p.ID, 1, false, "")
			}
			got := tab.ProbeTargets(1, 3, rand.New(rand.NewPCG(uint64(i), 1)))
			if want := min(n-1, 5); len(got) != want {
				t.Fatalf("%d nodes: %s probes %d peers, want %d", n, id(i), len(got), want)
			}
			for _, p := range got {
				if p.ID == id(i) {
					t.Fatalf("%s probes itself", id(i))
				}
				if p.ID == id((i+1)%n) || p.ID == id((i+n-1)%n) {
					probedBy[p.ID]++
				}
			}
		}
		for i := range n {
			if want := min(n-1, 2); probedBy[id(i)] != want {
				t.Fatalf("%d nodes: %s is probed by %d neighbours, want %d", n, id(i), probedBy[id(i)], want)
			}
		}
	}
}

func TestHelpers(t *testing.T) {
	tab := New("n1", "", []Peer{{ID: "n2"}, {ID: "n3"}, {ID: "n4"}, {ID: "n5"}}, nil)
	for _, p := range []string{"n2", "n3", "n4"} {
		tab.Heard(p, 1, false, "")
	}
	got := tab.Helpers("n2", 5, rand.New(rand.NewPCG(1, 2)))
	slices.SortFunc(got, func(a, b Peer) int { return len(a.ID) - len(b.ID) })
	if len(got) != 2 || slices.ContainsFunc(got, func(p Peer) bool { return p.ID == "n2" || p.ID == "n5" }) {
		t.Fatalf("helpers %v: want n3 and n4 (alive, not the target)", got)
	}
}

func id(i int) string {
	return "n" + string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26))
}

func TestObserve(t *testing.T) {
	clk := &clock{time.Unix(1000, 0)}
	tab := New("n1", "", []Peer{{ID: "n2"}}, clk.now)
	steps := []struct {
		st        State
		inc       uint64
		from, to  State
		restarted bool
	}{
		{Alive, 5, Unknown, Alive, false},
		{Suspect, 5, Alive, Suspect, false},
		{Draining, 5, Suspect, Draining, false},
		{Alive, 5, Draining, Draining, false}, // never stops draining
		{Alive, 4, Unknown, Unknown, false},   // an older run
		{Left, 5, Draining, Left, false},
		{Dead, 5, Left, Left, false}, // the layer's late news of its departure
		{Alive, 6, Left, Alive, true},
		{Dead, 6, Alive, Dead, false},
	}
	for i, s := range steps {
		c := tab.Observe("n2", s.st, s.inc)
		if c.From != s.from || c.To != s.to || c.Restarted != s.restarted {
			t.Fatalf("step %d: %v -> %v restarted %v, want %v -> %v restarted %v", i, c.From, c.To, c.Restarted, s.from, s.to, s.restarted)
		}
	}
}
