package core

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// attrList behaves as a map kept sorted, at every size.
func TestAttrListAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var l attrList
		ref := map[string][]byte{}
		for op := range 60 {
			k := fmt.Sprintf("k%02d", rng.IntN(20))
			if rng.IntN(3) == 0 {
				_, had := ref[k]
				if got := l.remove(k); got != had {
					t.Fatalf("round %d op %d: remove(%q) = %v, want %v", round, op, k, got, had)
				}
				delete(ref, k)
			} else {
				v := []byte(fmt.Sprint(op))
				l.put(k, v)
				ref[k] = v
			}
			if !slices.IsSortedFunc(l, func(a, b Attr) int { return strings.Compare(a.Key, b.Key) }) || len(l) != len(ref) {
				t.Fatalf("round %d op %d: %v not sorted or not %d long", round, op, l, len(ref))
			}
			for k, v := range ref {
				if got, ok := l.get(k); !ok || string(got) != string(v) {
					t.Fatalf("get(%q) = %q, %v; want %q", k, got, ok, v)
				}
			}
			if _, ok := l.get("absent"); ok {
				t.Fatal("absent key found")
			}
		}
		size := 0
		for k, v := range ref {
			size += len(k) + len(v)
		}
		if l.size() != size {
			t.Fatalf("size %d, want %d", l.size(), size)
		}
	}
}

// attrListOf sorts an unsorted Set and keeps the last value of a key given
// twice.
func TestAttrListOf(t *testing.T) {
	l := attrListOf([]Attr{{"b", []byte("1")}, {"a", []byte("2")}, {"b", []byte("3")}})
	want := map[string]string{"a": "2", "b": "3"}
	got := map[string]string{}
	for _, a := range l {
		got[a.Key] = string(a.Value)
	}
	if !maps.Equal(got, want) || len(l) != 2 || l[0].Key != "a" {
		t.Fatalf("attrListOf = %v", l)
	}
	sorted := []Attr{{"a", nil}, {"b", nil}}
	if l := attrListOf(sorted); &l[0] == &sorted[0] {
		t.Fatal("attrListOf shares its input's array")
	}
}
