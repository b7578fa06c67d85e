package core

import (
	"hash/maphash"
	"math/bits"
)

// recTable is a set of records keyed by their IDs, each ID at most once: a
// store shard keeps its sessions in one, and each expiry bucket its own.
// It is open addressing with linear probing over a slice of pointers, the
// ID being the record's own: 8 bytes a slot where a map[string]*record slot
// also holds a copy of the ID's 16-byte header, and growing frees one slice
// instead of a map's tables (with the expiry buckets' tables, 60 B of heap
// and ~100 B of RSS a session less: TestMemoryPerSession). Slots hash with
// the store's seed
// (maphash), so an ID from a hostile cookie cannot aim at a slot.
// Deletion shifts the following run back: no tombstones.
//
// The zero recTable is empty and ready; it is not safe for concurrent use
// (the shard's mutex guards it).
type recTable struct {
	slots []*record // nil, or a power of two long and at most 3/4 full
	n     int
	shift uint8 // 64 - log2(len(slots)): a hash's top bits are its home
}

// home is the slot where a record of hash h starts probing. The top bits
// are used because the low ones pick the shard (the same in every table of
// a shard).
func (t *recTable) home(h uint64) int { return int(h >> t.shift) }

func (t *recTable) len() int { return t.n }

// get returns the record of id (hash h), or nil.
func (t *recTable) get(id string, h uint64) *record {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(h); ; i = (i + 1) & mask {
		r := t.slots[i]
		if r == nil {
			return nil
		}
		if r.id == id {
			return r
		}
	}
}

// put adds r (its ID's hash h), replacing and returning the record of the
// same ID that it held, if any.
func (t *recTable) put(seed maphash.Seed, r *record, h uint64) (old *record) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow(seed)
	}
	mask := len(t.slots) - 1
	for i := t.home(h); ; i = (i + 1) & mask {
		cur := t.slots[i]
		if cur == nil {
			t.slots[i] = r
			t.n++
			return nil
		}
		if cur.id == r.id {
			t.slots[i] = r
			return cur
		}
	}
}

// del removes r itself (hash h), not another record of its ID, and
// reports whether it was there.
func (t *recTable) del(seed maphash.Seed, r *record, h uint64) bool {
	if t.n == 0 || r == nil {
		return false
	}
	mask := len(t.slots) - 1
	i := t.home(h)
	for ; t.slots[i] != r; i = (i + 1) & mask {
		if t.slots[i] == nil {
			return false
		}
	}
	// Shift back every later record of the run that may live at i: one
	// whose home is not cyclically within (i, j].
	t.slots[i] = nil
	t.n--
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		k := t.home(maphash.String(seed, t.slots[j].id))
		if (j-k)&mask >= (j-i)&mask {
			t.slots[i], t.slots[j] = t.slots[j], nil
			i = j
		}
	}
	return true
}

// grow doubles the slots (or makes the first eight) and puts every record
// back.
func (t *recTable) grow(seed maphash.Seed) {
	size := max(8, 2*len(t.slots))
	old := t.slots
	t.slots = make([]*record, size)
	t.shift = uint8(64 - bits.TrailingZeros(uint(size)))
	mask := size - 1
	for _, r := range old {
		if r == nil {
			continue
		}
		i := t.home(maphash.String(seed, r.id))
		for t.slots[i] != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = r
	}
}

// appendTo appends every record held to out.
func (t *recTable) appendTo(out []*record) []*record {
	for _, r := range t.slots {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}
