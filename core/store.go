package core

import (
	"container/heap"
	"hash/maphash"
	"maps"
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
	attrs    map[string][]byte
	size     int // bytes of keys plus values
	version  uint64
	epoch    uint64 // ownership epoch (Change.Epoch); never changes once stored
	created  int64  // unix nanoseconds
	accessed atomic.Int64
	dead     bool
	moved    bool // dead because another node owns the session now
	// users counts the requests holding the record, from Load to Release.
	users int
	// leaving is non-nil while the record is being handed to another node:
	// closed when the handover ends. idle is closed when users drops to 0
	// during a handover.
	leaving chan struct{}
	idle    chan struct{}
	bucket  atomic.Int64 // expiry bucket index; written under the shard's mutex
}

// stamp returns the record's epoch and version. It runs under r.mu.
func (r *record) stamp() Stamp { return Stamp{Epoch: r.epoch, Version: r.version} }

// deadline is when the record expires, in unix nanoseconds.
func (r *record) deadline(idle, life int64) int64 {
	return min(r.accessed.Load()+idle, r.created+life)
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
	seed   maphash.Seed
	idle   int64
	life   int64
	width  int64
	max    int64
	count  atomic.Int64
	shards [shardCount]shard
}

type shard struct {
	mu      sync.RWMutex
	m       map[string]*record
	buckets map[int64]map[*record]struct{}
	due     bucketHeap
}

func newStore(idle, life, width int64, max int) *store {
	s := &store{seed: maphash.MakeSeed(), idle: idle, life: life, width: width, max: int64(max)}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*record)
		s.shards[i].buckets = make(map[int64]map[*record]struct{})
	}
	return s
}

func (s *store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%shardCount]
}

// get returns the live record for id.
func (s *store) get(id string, now int64) (*record, bool) {
	sh := s.shard(id)
	sh.mu.RLock()
	r, ok := sh.m[id]
	sh.mu.RUnlock()
	if !ok || r.deadline(s.idle, s.life) <= now {
		return nil, false
	}
	return r, true
}

// reserve claims room for one more session.
func (s *store) reserve() bool {
	for {
		n := s.count.Load()
		if n >= s.max {
			return false
		}
		if s.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// insert adds r, whose room was reserved. A record already under r.id is
// replaced (and marked dead by the caller beforehand).
func (s *store) insert(r *record) {
	sh := s.shard(r.id)
	b := s.bucketOf(r)
	sh.mu.Lock()
	if old, ok := sh.m[r.id]; ok {
		sh.unbucket(old)
		s.count.Add(-1)
	}
	sh.m[r.id] = r
	r.bucket.Store(b)
	sh.addToBucket(r, b)
	sh.mu.Unlock()
}

// remove deletes r if it is still the record stored under its ID.
func (s *store) remove(r *record) {
	sh := s.shard(r.id)
	sh.mu.Lock()
	if sh.m[r.id] == r {
		delete(sh.m, r.id)
		sh.unbucket(r)
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
	sh := s.shard(r.id)
	sh.mu.Lock()
	if sh.m[r.id] == r {
		sh.unbucket(r)
		r.bucket.Store(b)
		sh.addToBucket(r, b)
	}
	sh.mu.Unlock()
}

func (s *store) bucketOf(r *record) int64 {
	return r.deadline(s.idle, s.life) / s.width
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
			for r := range set {
				r.mu.Lock()
				if r.deadline(s.idle, s.life) > now {
					r.mu.Unlock()
					nb := s.bucketOf(r)
					r.bucket.Store(nb)
					sh.addToBucket(r, nb)
					continue
				}
				r.dead = true
				r.mu.Unlock()
				delete(sh.m, r.id)
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
		out = slices.AppendSeq(out, maps.Values(sh.m))
		sh.mu.RUnlock()
	}
	return out
}

func (sh *shard) addToBucket(r *record, b int64) {
	set, ok := sh.buckets[b]
	if !ok {
		set = make(map[*record]struct{})
		sh.buckets[b] = set
		heap.Push(&sh.due, b)
	}
	set[r] = struct{}{}
}

// unbucket removes r from its bucket. An emptied bucket stays in the heap
// until its time comes; popping it costs nothing.
func (sh *shard) unbucket(r *record) {
	if set, ok := sh.buckets[r.bucket.Load()]; ok {
		delete(set, r)
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
