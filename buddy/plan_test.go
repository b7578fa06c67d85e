package buddy

import (
	"slices"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

func TestFetchPlan(t *testing.T) {
	tests := []struct {
		name        string
		route       core.Route
		movedTo     string
		ownersBuddy string
		want        []candidate
	}{
		{"owner, then owner's buddy (newer than the cookie's backup), backup, local",
			core.Route{Owner: "n1", Backup: "n2"}, "", "n3",
			[]candidate{{"n1", SourceOwner}, {"n3", SourceOwnersBuddy}, {"n2", SourceBackup}, {"me", SourceLocal}}},
		{"the node it moved to comes first",
			core.Route{Owner: "n1", Backup: "n2"}, "n4", "n2",
			[]candidate{{"n4", SourceOwner}, {"n1", SourceOwner}, {"n2", SourceOwnersBuddy}, {"me", SourceLocal}}},
		{"this node is the owner's buddy: its copy in that place",
			core.Route{Owner: "n1", Backup: "me"}, "", "me",
			[]candidate{{"n1", SourceOwner}, {"me", SourceOwnersBuddy}}},
		{"this node was the owner (restarted, or gave it away)",
			core.Route{Owner: "me", Backup: "n2"}, "", "n2",
			[]candidate{{"n2", SourceOwnersBuddy}, {"me", SourceLocal}}},
		{"moved from here to here is nothing",
			core.Route{Owner: "n1"}, "me", "",
			[]candidate{{"n1", SourceOwner}, {"me", SourceLocal}}},
		{"unsaved: only its owner",
			core.Route{Owner: "n1", Backup: "n2", Unsaved: true}, "", "n3",
			[]candidate{{"n1", SourceOwner}}},
		{"no hints: only the local copy",
			core.Route{}, "", "",
			[]candidate{{"me", SourceLocal}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fetchPlan("me", tt.route, tt.movedTo, tt.ownersBuddy); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

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
		if got := successor(tt.ring, tt.id, tt.zone); got != tt.want {
			t.Errorf("successor(%v, %s) = %q, want %q", tt.ring, tt.id, got, tt.want)
		}
	}
}

func TestViewTransitions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const suspect, dead = time.Second, 3 * time.Second
	v := newView("n1", "", []Peer{{ID: "n1"}, {ID: "n2", Addr: "x:1"}})
	step := func(c change, from, to State) {
		t.Helper()
		if c.from != from || c.to != to {
			t.Fatalf("%v -> %v, want %v -> %v", c.from, c.to, from, to)
		}
	}
	c, _ := v.heard("n2", 7, false, "", t0)
	step(c, Unknown, Alive)
	step(v.silent("n2", t0.Add(suspect/2), suspect, dead), Alive, Alive)
	step(v.silent("n2", t0.Add(suspect), suspect, dead), Alive, Suspect)
	step(v.silent("n2", t0.Add(dead), suspect, dead), Suspect, Dead)
	c, _ = v.heard("n2", 7, false, "", t0.Add(4*time.Second))
	step(c, Dead, Alive)
	if c.restarted {
		t.Fatal("same incarnation counted as a restart")
	}
	c, _ = v.heard("n2", 8, false, "", t0.Add(5*time.Second))
	if !c.restarted {
		t.Fatal("new incarnation not counted as a restart")
	}
	c, _ = v.heard("n2", 8, true, "", t0.Add(6*time.Second))
	step(c, Alive, Draining)
	if v.inRing("n2") || !v.answers("n2") {
		t.Fatal("a draining peer is out of the ring but answers")
	}
	c, _ = v.heard("n2", 8, false, "", t0.Add(6*time.Second))
	step(c, Draining, Draining) // a serving ping sent before the drain, late
	c, _ = v.heard("n2", 9, false, "", t0.Add(6*time.Second))
	step(c, Draining, Alive) // restarted
	c, _ = v.heard("n2", 8, true, "", t0.Add(6*time.Second))
	step(c, Alive, Draining) // (an old run's ping, as the test needs it)
	// A leave from another incarnation is stale.
	step(v.mark("n2", Left, 7), Unknown, Unknown)
	step(v.mark("n2", Left, 8), Draining, Left)
	c, _ = v.heard("n2", 8, true, "", t0.Add(7*time.Second))
	step(c, Left, Left) // finishing its drain: still gone
	c, _ = v.heard("n2", 8, false, "", t0.Add(8*time.Second))
	step(c, Left, Alive) // serving traffic after a leave: it did not leave
	c, _ = v.heard("n2", 8, false, "cookie keys differ", t0.Add(9*time.Second))
	if c.mismatch == "" || v.inRing("n2") {
		t.Fatal("a mismatched peer stays in the ring")
	}
	c, _ = v.heard("n2", 8, false, "", t0.Add(10*time.Second))
	if c.mismatch != "ok" || !v.inRing("n2") {
		t.Fatal("a fixed peer does not come back")
	}
	if _, ok := v.heard("n9", 1, false, "", t0); ok {
		t.Fatal("an unknown peer was heard")
	}
}
