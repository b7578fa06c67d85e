package buddy

import (
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// backups holds the copies of other nodes' sessions, apart from this node's
// own sessions (which live in core's store).
type backups struct {
	seed   maphash.Seed
	shards [32]backupShard
}

type backupShard struct {
	mu sync.Mutex
	m  map[string]*backup
}

// backup is one session copy.
type backup struct {
	owner    string
	version  uint64
	attrs    map[string][]byte
	created  int64
	accessed int64
}

// outcome of applying one record.
type outcome int

const (
	applied outcome = iota
	ignored         // old or duplicate
	gap             // the delta does not follow the held version
)

func newBackups() *backups {
	b := &backups{seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*backup)
	}
	return b
}

func (b *backups) shard(id string) *backupShard {
	return &b.shards[maphash.String(b.seed, id)%uint64(len(b.shards))]
}

// apply applies one record from owner.
func (b *backups) apply(owner string, r wire.Record) outcome {
	c := r.Change
	if r.Kind == wire.KindFull && c.PrevID != "" {
		b.remove(c.PrevID)
	}
	sh := b.shard(c.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur := sh.m[c.ID]
	switch r.Kind {
	case wire.KindFull:
		if cur != nil && cur.version > c.Version {
			return ignored
		}
		bk := &backup{owner: owner, version: c.Version, attrs: make(map[string][]byte, len(c.Set)),
			created: c.Created.UnixNano(), accessed: c.Accessed.UnixNano()}
		for _, a := range c.Set {
			bk.attrs[a.Key] = a.Value
		}
		sh.m[c.ID] = bk
		return applied
	case wire.KindDelta:
		if cur == nil || cur.owner != owner {
			return gap
		}
		if c.Version <= cur.version {
			return ignored
		}
		if c.Base != cur.version {
			return gap
		}
		if c.Clear {
			cur.attrs = make(map[string][]byte, len(c.Set))
		}
		for _, k := range c.Deleted {
			delete(cur.attrs, k)
		}
		for _, a := range c.Set {
			cur.attrs[a.Key] = a.Value
		}
		cur.version, cur.owner = c.Version, owner
		cur.accessed = max(cur.accessed, c.Accessed.UnixNano())
		return applied
	case wire.KindRemove:
		if cur == nil || cur.owner != owner {
			return ignored // gone already, or moved to another owner
		}
		delete(sh.m, c.ID)
		return applied
	case wire.KindTouch:
		if cur == nil || cur.owner != owner {
			return ignored
		}
		cur.accessed = max(cur.accessed, c.Accessed.UnixNano())
		return applied
	}
	return ignored
}

func (b *backups) remove(id string) {
	sh := b.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

// ownerOf returns the owner of the copy of id, if one is held.
func (b *backups) ownerOf(id string) (string, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok {
		return "", false
	}
	return bk.owner, true
}

// take removes the copy of id and returns it as a full copy.
func (b *backups) take(id string) (*core.Change, string, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok {
		return nil, "", false
	}
	delete(sh.m, id)
	return bk.change(id), bk.owner, true
}

// removeFrom drops the copy of id if owner sent it.
func (b *backups) removeFrom(id, owner string) {
	sh := b.shard(id)
	sh.mu.Lock()
	if bk, ok := sh.m[id]; ok && bk.owner == owner {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
}

// get returns a full copy of the backup of id.
func (b *backups) get(id string) (*core.Change, string, bool) {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk, ok := sh.m[id]
	if !ok {
		return nil, "", false
	}
	return bk.change(id), bk.owner, true
}

func (bk *backup) change(id string) *core.Change {
	set := make([]core.Attr, 0, len(bk.attrs))
	for _, k := range slices.Sorted(maps.Keys(bk.attrs)) {
		set = append(set, core.Attr{Key: k, Value: bk.attrs[k]})
	}
	return &core.Change{ID: id, Version: bk.version, Full: true, Set: set,
		Created: unixTime(bk.created), Accessed: unixTime(bk.accessed)}
}

// expire drops the copies whose session must have expired on the owner: idle
// for longer than idle (the owner's idle timeout plus the touch interval) or
// older than life. It returns how many it dropped.
func (b *backups) expire(now, idle, life int64) int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for id, bk := range sh.m {
			if bk.accessed+idle <= now || bk.created+life <= now {
				delete(sh.m, id)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// len returns the number of copies held.
func (b *backups) len() int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// ids returns the IDs held for owner ("" for every owner), sorted.
func (b *backups) ids(owner string) []string {
	var out []string
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for id, bk := range sh.m {
			if owner == "" || bk.owner == owner {
				out = append(out, id)
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, strings.Compare)
	return out
}
