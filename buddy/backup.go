package buddy

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unique"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// backups holds the copies of other nodes' sessions, apart from this node's
// own sessions (which live in core's store), and the fences of the copies
// it handed out.
type backups struct {
	seed   maphash.Seed
	max    int          // most copies held; 0: no bound
	copies atomic.Int64 // copies held, fences not counted
	shards [32]backupShard
}

type backupShard struct {
	mu sync.Mutex
	m  map[string]*backup
}

// backup is one session copy, or a fence in its place: once handed out
// (movedTo set), the node that took the session over and the epoch it owns
// it under, so that the former owner's later changes are refused; once
// removed by its owner (ended set), the mark that the session ended, so
// that no stale copy elsewhere brings it back.
type backup struct {
	at       unique.Handle[place]
	ownerInc uint64 // the owner's incarnation when it sent the copy (0: unknown)
	epoch    uint64
	version  uint64
	attrs    attrList // nil for a fence, but a move's for moveKeep (keptFor)
	created  int64
	accessed int64
}

// place is where a copy's session lives: the owner that sent the copy and,
// for a fence, the node that took the session (movedTo) or the mark that
// it ended. A buddy sees few distinct places (its owners, their move
// targets), so a copy holds an interned handle: one word instead of five,
// which puts a copy in the 80-byte size class instead of the 112-byte one.
type place struct {
	owner   string
	movedTo string // set: a fence for the node that took the session
	ended   bool   // set: a fence for a session that ended
}

func placeOf(owner, movedTo string, ended bool) unique.Handle[place] {
	return unique.Make(place{owner: owner, movedTo: movedTo, ended: ended})
}

func (bk *backup) owner() string   { return bk.at.Value().owner }
func (bk *backup) movedTo() string { return bk.at.Value().movedTo }
func (bk *backup) ended() bool     { return bk.at.Value().ended }

func (bk *backup) fence() bool {
	p := bk.at.Value()
	return p.movedTo != "" || p.ended
}

// holder is the node that owns the session as far as this copy knows.
func (bk *backup) holder() string {
	if bk.fence() {
		return bk.movedTo()
	}
	return bk.owner()
}

// outcome of applying one record.
type outcome int

const (
	applied outcome = iota
	ignored         // old or duplicate
	gap             // the delta does not follow the held version
	fenced          // another node owns the session under a newer epoch
	full            // a new copy, and the node holds the most copies it may
)

func newBackups(max int) *backups {
	b := &backups{seed: maphash.MakeSeed(), max: max}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*backup)
	}
	return b
}

// set stores bk under id in sh (locked), keeping the count of copies.
func (b *backups) set(sh *backupShard, id string, bk *backup) {
	if old, ok := sh.m[id]; ok && !old.fence() {
		b.copies.Add(-1)
	}
	if !bk.fence() {
		b.copies.Add(1)
	}
	sh.m[id] = bk
}

// del removes id from sh (locked), keeping the count of copies.
func (b *backups) del(sh *backupShard, id string) {
	if old, ok := sh.m[id]; ok {
		if !old.fence() {
			b.copies.Add(-1)
		}
		delete(sh.m, id)
	}
}

func (b *backups) shard(id string) *backupShard {
	return &b.shards[maphash.String(b.seed, id)%uint64(len(b.shards))]
}

// apply applies one record from owner, running as incarnation inc. A
// record from an older epoch than
// the copy's (or fence's), or from the same epoch but another owner, is
// fenced: the returned wire.Fence names the holder and epoch.
func (b *backups) apply(owner string, inc uint64, r wire.Record) (outcome, wire.Fence) {
	c := r.Change
	if r.Kind == wire.KindFull && c.PrevID != "" {
		b.end(c.PrevID, owner) // the session's old ID is dead
	}
	if r.Kind == wire.KindRemove && c.Epoch == 0 {
		// "Drop what you hold from me": the owner no longer has it and
		// does not know its epoch (a full resend of a session gone since).
		if b.removeFrom(c.ID, owner) {
			return applied, wire.Fence{}
		}
		return ignored, wire.Fence{}
	}
	sh := b.shard(c.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur := sh.m[c.ID]
	if cur != nil && cur.ended() && c.Epoch <= cur.epoch {
		if r.Kind == wire.KindDelta || r.Kind == wire.KindFull {
			// A change of a session that ended: its sender holds a stale
			// copy.
			return fenced, wire.Fence{ID: c.ID, Epoch: cur.epoch}
		}
		return ignored, wire.Fence{}
	}
	if cur != nil && (c.Epoch < cur.epoch || c.Epoch == cur.epoch && cur.owner() != owner && !cur.fence()) {
		return fenced, wire.Fence{ID: c.ID, Holder: cur.holder(), Epoch: cur.epoch}
	}
	if cur != nil && cur.fence() {
		cur = nil // the fence is not older than the record: as if absent
	}
	switch r.Kind {
	case wire.KindFull:
		if cur != nil && cur.epoch == c.Epoch && cur.version > c.Version {
			return ignored, wire.Fence{}
		}
		if cur == nil && b.max > 0 && b.copies.Load() >= int64(b.max) {
			return full, wire.Fence{}
		}
		var at unique.Handle[place]
		if cur != nil && cur.owner() == owner {
			at = cur.at // owner's copy (not a fence): no lookup
		} else {
			at = placeOf(owner, "", false)
		}
		bk := &backup{at: at, ownerInc: inc, epoch: c.Epoch, version: c.Version, attrs: attrListOf(c.Set),
			created: c.Created.UnixNano(), accessed: c.Accessed.UnixNano()}
		b.set(sh, c.ID, bk)
		return applied, wire.Fence{}
	case wire.KindDelta:
		if cur == nil || cur.epoch != c.Epoch {
			return gap, wire.Fence{}
		}
		if c.Version <= cur.version {
			return ignored, wire.Fence{}
		}
		if c.Base != cur.version {
			return gap, wire.Fence{}
		}
		if c.Clear {
			cur.attrs = make(attrList, 0, len(c.Set))
		}
		for _, k := range c.Deleted {
			cur.attrs.remove(k)
		}
		for _, a := range c.Set {
			cur.attrs.put(a.Key, a.Value)
		}
		cur.version = c.Version
		cur.accessed = max(cur.accessed, c.Accessed.UnixNano())
		if inc != 0 {
			cur.ownerInc = inc
		}
		return applied, wire.Fence{}
	case wire.KindRemove:
		if cur == nil {
			return ignored, wire.Fence{} // gone already
		}
		b.set(sh, c.ID, cur.endedFence(max(c.Epoch, cur.epoch)))
		return applied, wire.Fence{}
	case wire.KindTouch:
		if cur == nil || cur.epoch != c.Epoch {
			return ignored, wire.Fence{}
		}
		cur.accessed = max(cur.accessed, c.Accessed.UnixNano())
		return applied, wire.Fence{}
	}
	return ignored, wire.Fence{}
}

// move applies a KindMove record from owner: the owner, holding session id
// under epoch, hands it to node to. The copy (or nothing) becomes a fence
// for to under epoch+1, so that no other asker is handed this copy and the
// owner's older records are refused. When this node handed the copy out
// already, or knows a newer epoch, or the session ended, the move is
// fenced: the returned wire.Fence names the holder ("" when it ended).
// Applied twice, the second is a no-op. now stamps a fence made from
// nothing.
//
// A move to this node itself (self) leaves the copy as it is: this node is
// fetching the session, and hands nothing out meanwhile (core's single
// flight answers askers "pending"); if the owner's answer is lost on the
// way (the owner stops), the copy is still here to take.
func (b *backups) move(owner, id string, epoch uint64, to, self string, now int64) (outcome, wire.Fence) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur := sh.m[id]
	fence := &backup{at: placeOf(owner, to, false), epoch: epoch + 1, created: now, accessed: now}
	switch {
	case cur == nil:
	case cur.ended() && cur.epoch >= epoch:
		return fenced, wire.Fence{ID: id, Epoch: cur.epoch}
	case cur.fence() && cur.movedTo() == to && cur.epoch == epoch+1:
		return ignored, wire.Fence{} // this move, again
	case cur.epoch > epoch, cur.epoch == epoch && !cur.fence() && cur.owner() != owner:
		// Handed out already (a fence under epoch+1 or later), or a newer
		// owner's copy: the sender lost the session first.
		return fenced, wire.Fence{ID: id, Holder: cur.holder(), Epoch: cur.epoch}
	case to == self && !cur.fence():
		return applied, wire.Fence{}
	default:
		fence.version, fence.created, fence.accessed = cur.version, cur.created, max(cur.accessed, now)
		// The fence keeps the copy for a moment (keptFor): if the owner
		// stops before its answer reaches the node it gave the session
		// to, that node gets it here instead of losing it.
		fence.attrs = cur.attrs
	}
	if to == self {
		return applied, wire.Fence{}
	}
	b.set(sh, id, fence)
	return applied, wire.Fence{}
}

// moveKeep is how long a move's fence keeps the copy for the node the
// session went to.
const moveKeep = int64(60e9) // a minute, in nanoseconds

// keptFor returns the copy that the fence of id for node to keeps, when
// the move was recent: the node asks for the session it was given, so the
// owner's answer never reached it (the owner stopped first).
func (b *backups) keptFor(id, to string, now int64) (*core.Change, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok || bk.ended() || bk.movedTo() != to || bk.attrs == nil || bk.accessed+moveKeep <= now {
		return nil, false
	}
	c := bk.change(id)
	c.Epoch-- // the epoch the owner gave it under: the fence's is the next
	return c, true
}

// endedFence returns the fence that replaces a copy whose session ended
// under epoch; it expires when the copy would have.
func (bk *backup) endedFence(epoch uint64) *backup {
	return &backup{at: placeOf(bk.owner(), "", true), epoch: epoch, version: bk.version, created: bk.created, accessed: bk.accessed}
}

// end replaces the copy of id from owner by an ended fence.
func (b *backups) end(id, owner string) {
	sh := b.shard(id)
	sh.mu.Lock()
	if bk, ok := sh.m[id]; ok && !bk.fence() && bk.owner() == owner {
		b.set(sh, id, bk.endedFence(bk.epoch))
	}
	sh.mu.Unlock()
}

// endHere records that session id, owned by this node (self) under
// epoch, ended here at now: a stale copy of it from a former owner is
// refused from now on, until the session would have expired.
func (b *backups) endHere(id, self string, epoch uint64, now int64) {
	sh := b.shard(id)
	sh.mu.Lock()
	b.set(sh, id, &backup{at: placeOf(self, "", true), epoch: epoch, created: now, accessed: now})
	sh.mu.Unlock()
}

// endedHere returns the epoch under which session id ended on this node
// (self), as endHere recorded it.
func (b *backups) endedHere(id, self string) (uint64, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if bk, ok := sh.m[id]; ok && bk.ended() && bk.owner() == self {
		return bk.epoch, true
	}
	return 0, false
}

// entry is what the node knows of one session ID: a copy or a fence.
type entry struct {
	holder string // the copy's owner, or the node a fence points to ("" when ended)
	inc    uint64 // the owner's incarnation when it sent the copy
	fence  bool
	ended  bool
}

// lookup returns what the node holds of session id.
func (b *backups) lookup(id string) (entry, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok {
		return entry{}, false
	}
	return entry{holder: bk.holder(), inc: bk.ownerInc, fence: bk.fence(), ended: bk.ended()}, true
}

// handOut turns the copy of id from owner into a fence for the node to
// that takes the session over (this node itself, when it takes its own
// copy over), and returns the copy. The session's epoch under to is the
// copy's plus one; the former owner's changes from older epochs are
// refused from now on, also once the session ended on its new owner.
func (b *backups) handOut(id, owner, to string) (*core.Change, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok || bk.fence() || bk.owner() != owner {
		return nil, false
	}
	c := bk.change(id)
	b.set(sh, id, &backup{at: placeOf(bk.owner(), to, false), epoch: bk.epoch + 1, version: bk.version, created: bk.created, accessed: bk.accessed})
	return c, true
}

// dropOlder drops the copy of id held from any owner if it is from an
// epoch up to epoch: this node owns the session under epoch, so such a
// copy is a stale leftover that must never be handed out.
func (b *backups) dropOlder(id string, epoch uint64) {
	sh := b.shard(id)
	sh.mu.Lock()
	if bk, ok := sh.m[id]; ok && !bk.fence() && bk.epoch <= epoch {
		b.del(sh, id)
	}
	sh.mu.Unlock()
}

// restore puts back a copy handed out to this node that it could not take
// over after all (its own store refused it), replacing the fence.
func (b *backups) restore(owner string, inc uint64, c *core.Change) {
	sh := b.shard(c.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk := &backup{at: placeOf(owner, "", false), ownerInc: inc, epoch: c.Epoch, version: c.Version, attrs: attrListOf(c.Set),
		created: c.Created.UnixNano(), accessed: c.Accessed.UnixNano()}
	b.set(sh, c.ID, bk)
}

// removeFrom drops the copy of id if owner sent it.
func (b *backups) removeFrom(id, owner string) bool {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if bk, ok := sh.m[id]; ok && !bk.fence() && bk.owner() == owner {
		b.del(sh, id)
		return true
	}
	return false
}

// get returns a full copy of the backup of id and its owner.
func (b *backups) get(id string) (*core.Change, string, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok || bk.fence() {
		return nil, "", false
	}
	return bk.change(id), bk.owner(), true
}

func (bk *backup) change(id string) *core.Change {
	return &core.Change{ID: id, Version: bk.version, Epoch: bk.epoch, Full: true, Set: slices.Clone(bk.attrs),
		Created: unixTime(bk.created), Accessed: unixTime(bk.accessed)}
}

// expire drops the copies, and fences, whose session must have expired on
// the owner: idle for longer than idle (the owner's idle timeout plus the
// touch interval) or older than life. It returns how many copies it
// dropped; when dropped is not nil, it appends them to it.
func (b *backups) expire(now, idle, life int64, dropped *[]expiredCopy) int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for id, bk := range sh.m {
			if bk.fence() && bk.attrs != nil && bk.accessed+moveKeep <= now {
				bk.attrs = nil // a move's kept copy, no longer needed
			}
			if bk.accessed+idle <= now || bk.created+life <= now {
				b.del(sh, id)
				if !bk.fence() {
					n++
					if dropped != nil {
						*dropped = append(*dropped, expiredCopy{id, bk})
					}
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// len returns the number of copies held, fences not counted.
func (b *backups) len() int { return int(b.copies.Load()) }

// ids returns the IDs of the copies held for owner ("" for every owner),
// sorted; fences are not copies.
func (b *backups) ids(owner string) []string {
	var out []string
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for id, bk := range sh.m {
			if !bk.fence() && (owner == "" || bk.owner() == owner) {
				out = append(out, id)
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, strings.Compare)
	return out
}

// attrList is a copy's attributes, sorted by key, each key once: one small
// allocation where a map costs a header and a group of eight slots (a copy
// of one attribute: about 100 bytes instead of 450). It is changed only
// under its shard's lock; values are never modified in place.
type attrList []core.Attr

func compareKey(a core.Attr, key string) int { return strings.Compare(a.Key, key) }

// put sets key to v, in place when key is present.
func (l *attrList) put(key string, v []byte) {
	i, ok := slices.BinarySearchFunc(*l, key, compareKey)
	if ok {
		(*l)[i].Value = v
		return
	}
	*l = slices.Insert(*l, i, core.Attr{Key: key, Value: v})
}

// get returns key's value, nil when absent.
func (l attrList) get(key string) []byte {
	if i, ok := slices.BinarySearchFunc(l, key, compareKey); ok {
		return l[i].Value
	}
	return nil
}

// remove deletes key.
func (l *attrList) remove(key string) {
	if i, ok := slices.BinarySearchFunc(*l, key, compareKey); ok {
		*l = slices.Delete(*l, i, i+1)
	}
}

// attrListOf returns a sorted copy of set; a key given more than once keeps
// its last value.
func attrListOf(set []core.Attr) attrList {
	l := make(attrList, 0, len(set))
	for _, a := range set {
		if len(l) == 0 || l[len(l)-1].Key < a.Key {
			l = append(l, a)
			continue
		}
		l.put(a.Key, a.Value)
	}
	return l
}
