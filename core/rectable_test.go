package core

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestRecTableAgainstAMap runs random puts, replacements and deletions on a
// recTable and on a Go map side by side, small tables first (where the
// runs wrap around the end) then larger ones, and compares after each step.
func TestRecTableAgainstAMap(t *testing.T) {
	seed := maphash.MakeSeed()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ids := range []int{3, 9, 40, 1000} {
		var tab recTable
		ref := map[string]*record{}
		for step := range 20_000 {
			id := strconv.Itoa(rng.IntN(ids))
			h := maphash.String(seed, id)
			switch op := rng.IntN(10); {
			case op < 5:
				r := &record{id: id}
				old := tab.put(seed, r, h)
				if old != ref[id] {
					t.Fatalf("%d ids, step %d: put %s replaced %p, want %p", ids, step, id, old, ref[id])
				}
				ref[id] = r
			case op < 6:
				// Deleting a record that is not the one held (same ID) is a no-op.
				if tab.del(seed, &record{id: id}, h) {
					t.Fatalf("%d ids, step %d: deleted a record never put", ids, step)
				}
			default:
				r, held := ref[id]
				if got := tab.del(seed, r, h); got != held {
					t.Fatalf("%d ids, step %d: del %s = %v, want %v", ids, step, id, got, held)
				}
				delete(ref, id)
			}
			if tab.len() != len(ref) {
				t.Fatalf("%d ids, step %d: len %d, want %d", ids, step, tab.len(), len(ref))
			}
			for k, r := range ref {
				if got := tab.get(k, maphash.String(seed, k)); got != r {
					t.Fatalf("%d ids, step %d: get %s = %p, want %p", ids, step, k, got, r)
				}
			}
			if got := tab.get("absent", maphash.String(seed, "absent")); got != nil {
				t.Fatalf("get of an ID never put = %p", got)
			}
		}
		if n := len(tab.appendTo(nil)); n != len(ref) {
			t.Fatalf("appendTo gave %d records, want %d", n, len(ref))
		}
	}
}

// TestRecTableZero: the zero table is empty and answers without slots.
func TestRecTableZero(t *testing.T) {
	var tab recTable
	seed := maphash.MakeSeed()
	r := &record{id: "x"}
	h := maphash.String(seed, "x")
	if tab.get("x", h) != nil || tab.del(seed, r, h) || tab.len() != 0 || len(tab.appendTo(nil)) != 0 {
		t.Fatal("the zero recTable is not empty")
	}
}
