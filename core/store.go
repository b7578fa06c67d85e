package core

import (
	"cmp"
	"container/heap"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

const shardCount = 64

// record is one stored session. attrs, size, version, epoch, dead, moved,
// users, leaving and idle are guarded by mu; bucket is guarded by the
// shard's mutex. Values in attrs are never modified in place, so a value
// read under mu may be used after unlocking. handover.go describes the
// life of a record between nodes.
type record struct {
	mu       sync.Mutex
	id       string
	attrs    attrList
	size     int // bytes of keys plus values
	version  uint64
	epoch    uint64 // ownership epoch (Change.Epoch); never changes once stored
	created  int64  // unix nanoseconds
	accessed atomic.Int64
	bucket   atomic.Int64 // expiry bucket index; written under the shard's mutex
	// prev and next link the shard's first-visit sessions, oldest first;
	// guarded by the shard's mutex.
	prev, next *record
	// pending is the acknowledgement of the latest replicated commit, until
	// a wait for it succeeded: a request that only read waits for it too,
	// so that no response shows what is not on two nodes yet. gen counts
	// the commits that set it (it only ever meets the generation of a
	// request's own commit, so its wrapping at 2^32 is harmless). Guarded
	// by mu.
	pending Ack
	gen     uint32
	// users counts the requests holding the record, from Load to Release.
	users int32
	// leaving is non-nil while the record is being handed to another node:
	// closed when the handover ends. idle is closed when users drops to 0
	// during a handover.
	leaving chan struct{}
	idle    chan struct{}
	// returned: a request came back with the session after the one that
	// created it. Until then the session is first-visit: it expires after
	// the shorter first-visit idle timeout, and is evicted first when the
	// node is full.
	returned atomic.Bool
	dead     bool
	moved    bool // dead because another node owns the session now
	// (The fields are ordered so that a record is 160 bytes, a size class
	// of its own: 16 bytes less per session than in declaration order.)
}

// setPending records a, the acknowledgement of the commit just replicated,
// and returns its generation. It runs under r.mu.
func (r *record) setPending(a Ack) uint32 {
	r.pending = a
	r.gen++
	return r.gen
}

// pendingAck returns the acknowledgement of the latest commit not known to
// be replicated, or nil.
func (r *record) pendingAck() Ack {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending
}

// settled forgets the acknowledgement of generation gen, which was waited
// for, unless a later commit replaced it.
func (r *record) settled(gen uint32) {
	r.mu.Lock()
	if r.gen == gen {
		r.pending = nil
	}
	r.mu.Unlock()
}

// stamp returns the record's epoch and version. It runs under r.mu.
func (r *record) stamp() Stamp { return Stamp{Epoch: r.epoch, Version: r.version} }

// deadline is when r expires, in unix nanoseconds.
func (s *store) deadline(r *record) int64 {
	idle := s.idle
	if !r.returned.Load() {
		idle = s.firstIdle
	}
	return min(r.accessed.Load()+idle, r.created+s.life)
}

// touch moves the last access forward (never back).
func (r *record) touch(now int64) {
	for {
		old := r.accessed.Load()
		if now <= old || r.accessed.CompareAndSwap(old, now) {
			return
		}
	}
}

// store is a sharded map of records with an expiry index. Each shard keeps
// its records in buckets by deadline (bucket width = the sweep interval) and
// a min-heap of the non-empty bucket indices, so a sweep visits only the
// buckets that are due: its cost grows with what expires, not with what
// lives.
type store struct {
	seed      maphash.Seed
	idle      int64
	firstIdle int64 // idle timeout of a session no request came back with yet
	life      int64
	width     int64
	max       int64
	count     atomic.Int64
	shards    [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	// installs serializes the installs of copies (Manager.install) of the
	// shard's sessions, from looking up the record held to storing the
	// new one: two installs of one session at once (a drain's promotion
	// and a fetch) would otherwise both store theirs, and a request would
	// commit into the record the other replaced.
	installs sync.Mutex
	seed     maphash.Seed // the store's
	m        recTable
	buckets  map[int64]*recTable
	due      bucketHeap
	// first and last are the ends of the list of first-visit sessions,
	// oldest first.
	first, last *record
}

func newStore(idle, firstIdle, life, width int64, max int) *store {
	s := &store{seed: maphash.MakeSeed(), idle: idle, firstIdle: min(firstIdle, idle), life: life, width: width, max: int64(max)}
	for i := range s.shards {
		s.shards[i].seed = s.seed
		s.shards[i].buckets = make(map[int64]*recTable)
	}
	return s
}

func (s *store) shard(id string) *shard {
	sh, _ := s.locate(id)
	return sh
}

// locate returns the shard of id and the hash that places id in the
// shard's tables.
func (s *store) locate(id string) (*shard, uint64) {
	h := maphash.String(s.seed, id)
	return &s.shards[h%shardCount], h
}

// hash returns the hash of id, as locate does.
func (sh *shard) hash(id string) uint64 { return maphash.String(sh.seed, id) }

// installLock is the lock that serializes the installs of session id (a
// mutex, not an unlock func: a method value would cost an allocation per
// install).
func (s *store) installLock(id string) *sync.Mutex {
	return &s.shard(id).installs
}

// get returns the live record for id.
func (s *store) get(id string, now int64) (*record, bool) {
	sh, h := s.locate(id)
	sh.mu.RLock()
	r := sh.m.get(id, h)
	sh.mu.RUnlock()
	if r == nil || s.deadline(r) <= now {
		return nil, false
	}
	return r, true
}

// reserve claims room for one more session. When the store is full, it
// evicts the oldest first-visit session that no request holds, and returns
// it (dead) for the caller to tell the replicator; it reports false when
// there is none to evict. (Concurrent reservations may take the count past
// max by their number, for as long as they evict.)
func (s *store) reserve() (ok bool, evicted *record) {
	if s.count.Add(1) <= s.max {
		return true, nil
	}
	if evicted = s.evict(); evicted != nil {
		return true, evicted
	}
	s.count.Add(-1)
	return false, nil
}

// evict removes the oldest first-visit session that no request holds:
// it looks at the oldest end of each shard's list, oldest shard first.
func (s *store) evict() *record {
	type head struct {
		created int64
		shard   int
	}
	var heads [shardCount]head
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		if sh.first != nil {
			heads[n] = head{sh.first.created, i}
			n++
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(heads[:n], func(a, b head) int { return cmp.Compare(a.created, b.created) })
	for _, h := range heads[:n] {
		if r := s.shards[h.shard].evictOldest(); r != nil {
			s.count.Add(-1)
			return r
		}
	}
	return nil
}

// evictOldest removes and returns the shard's oldest first-visit session
// that no request holds or hands over, marked dead; nil when there is none.
func (sh *shard) evictOldest() *record {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for r := sh.first; r != nil; r = r.next {
		r.mu.Lock()
		free := r.users == 0 && !r.dead && r.leaving == nil
		if free {
			r.dead = true
		}
		r.mu.Unlock()
		if free {
			h := sh.hash(r.id)
			sh.unlink(r)
			sh.m.del(sh.seed, r, h)
			sh.unbucket(r, h)
			return r
		}
	}
	return nil
}

// returned records that a request came back with r: it is no longer a
// first-visit session.
func (s *store) returned(r *record) {
	if r.returned.Load() || r.returned.Swap(true) {
		return
	}
	sh, h := s.locate(r.id)
	sh.mu.Lock()
	sh.unlink(r)
	if sh.m.get(r.id, h) == r {
		// Its deadline moved later: re-file it.
		sh.unbucket(r, h)
		b := s.bucketOf(r)
		r.bucket.Store(b)
		sh.addToBucket(r, b, h)
	}
	sh.mu.Unlock()
}

// push appends r to the shard's first-visit list. It runs under sh.mu.
func (sh *shard) push(r *record) {
	r.prev, r.next = sh.last, nil
	if sh.last != nil {
		sh.last.next = r
	} else {
		sh.first = r
	}
	sh.last = r
}

// unlink takes r off the shard's first-visit list, if it is on it. It runs
// under sh.mu.
func (sh *shard) unlink(r *record) {
	if r.prev == nil && sh.first != r {
		return // not on the list
	}
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		sh.first = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		sh.last = r.prev
	}
	r.prev, r.next = nil, nil
}

// insert adds r, whose room was reserved. A record already under r.id is
// replaced (and marked dead by the caller beforehand). A record not marked
// returned is a first-visit session.
func (s *store) insert(r *record) {
	sh, h := s.locate(r.id)
	b := s.bucketOf(r)
	sh.mu.Lock()
	if old := sh.m.put(sh.seed, r, h); old != nil {
		sh.unbucket(old, h)
		sh.unlink(old)
		s.count.Add(-1)
	}
	r.bucket.Store(b)
	sh.addToBucket(r, b, h)
	if !r.returned.Load() {
		sh.push(r)
	}
	sh.mu.Unlock()
}

// remove deletes r if it is still the record stored under its ID.
func (s *store) remove(r *record) {
	sh, h := s.locate(r.id)
	sh.mu.Lock()
	if sh.m.del(sh.seed, r, h) {
		sh.unbucket(r, h)
		sh.unlink(r)
		s.count.Add(-1)
	}
	sh.mu.Unlock()
}

// touched re-files r after its last access moved; it takes the shard lock
// only when the deadline crossed into another bucket.
func (s *store) touched(r *record) {
	b := s.bucketOf(r)
	if r.bucket.Load() == b {
		return
	}
	sh, h := s.locate(r.id)
	sh.mu.Lock()
	if sh.m.get(r.id, h) == r {
		sh.unbucket(r, h)
		r.bucket.Store(b)
		sh.addToBucket(r, b, h)
	}
	sh.mu.Unlock()
}

func (s *store) bucketOf(r *record) int64 {
	return s.deadline(r) / s.width
}

// sweep removes every record whose deadline passed and returns them, marked
// dead.
func (s *store) sweep(now int64) []*record {
	var expired []*record
	cur := now / s.width // buckets below cur are entirely in the past
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for len(sh.due) > 0 && sh.due[0] < cur {
			b := heap.Pop(&sh.due).(int64)
			set := sh.buckets[b]
			delete(sh.buckets, b)
			if set == nil {
				continue
			}
			for _, r := range set.slots {
				if r == nil {
					continue
				}
				r.mu.Lock()
				if s.deadline(r) > now {
					r.mu.Unlock()
					nb := s.bucketOf(r)
					r.bucket.Store(nb)
					sh.addToBucket(r, nb, sh.hash(r.id))
					continue
				}
				r.dead = true
				r.mu.Unlock()
				sh.m.del(sh.seed, r, sh.hash(r.id))
				sh.unlink(r)
				s.count.Add(-1)
				expired = append(expired, r)
			}
		}
		sh.mu.Unlock()
	}
	return expired
}

// records returns every live record, for state transfer.
func (s *store) records() []*record {
	out := make([]*record, 0, s.count.Load())
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		out = sh.m.appendTo(out)
		sh.mu.RUnlock()
	}
	return out
}

// addToBucket files r (its ID's hash h) in bucket b.
func (sh *shard) addToBucket(r *record, b int64, h uint64) {
	set, ok := sh.buckets[b]
	if !ok {
		set = new(recTable)
		sh.buckets[b] = set
		heap.Push(&sh.due, b)
	}
	set.put(sh.seed, r, h)
}

// unbucket removes r from its bucket. An emptied bucket stays in the heap
// until its time comes; popping it costs nothing.
func (sh *shard) unbucket(r *record, h uint64) {
	if set, ok := sh.buckets[r.bucket.Load()]; ok {
		set.del(sh.seed, r, h)
	}
}

// bucketHeap is a min-heap of bucket indices.
type bucketHeap []int64

func (h bucketHeap) Len() int           { return len(h) }
func (h bucketHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h bucketHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *bucketHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *bucketHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
