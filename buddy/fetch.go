package buddy

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/tandemsession/tandem/core"
)

// Fetch sources, the keys of Stats.Fetches.
const (
	SourceOwner       = "owner"        // the owner named in the cookie gave it up
	SourceBackup      = "backup"       // the backup named in the cookie
	SourceOwnersBuddy = "owners_buddy" // the owner's buddy in the current ring
	SourceLocal       = "local"        // this node's own backup copy
	SourceScan        = "scan"         // found by asking every live node
	SourceNone        = "none"         // nobody holds it: a fresh session
)

var fetchSources = []string{SourceOwner, SourceBackup, SourceOwnersBuddy, SourceLocal, SourceScan, SourceNone}

var _ core.Fetcher = (*Node)(nil)

// Fetch implements core.Fetcher: it brings the session id from the node
// that holds it, in this order: the owner named in the cookie (if alive),
// the backup named in the cookie, the owner's buddy in the current ring,
// then every live node. The holder gives its copy up, so one node owns the
// session at a time; when several hold one, the highest version wins.
// Unknown IDs are remembered for a while, so repeated lookups cost nothing.
func (n *Node) Fetch(ctx context.Context, id string, route core.Route, local uint64) (*core.Change, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicationTimeout)
	defer cancel()
	self := n.cfg.ID
	ownerAlive := route.Owner != "" && route.Owner != self && n.reachable(route.Owner)
	if local > 0 {
		// This node holds a copy; only a live owner elsewhere can hold a
		// newer one.
		if !ownerAlive {
			return nil, false, nil
		}
		c, ok := n.ask(ctx, route.Owner, id)
		if ok && c.Version > local {
			n.stats.fetched(SourceOwner)
			return c, true, nil
		}
		return nil, false, nil
	}
	if route.Unsaved {
		// Issued before the session was stored: only its owner can hold it.
		if ownerAlive {
			if c, ok := n.ask(ctx, route.Owner, id); ok {
				n.stats.fetched(SourceOwner)
				return c, true, nil
			}
		}
		return nil, false, nil
	}
	if n.misses.has(id, time.Now()) {
		return nil, false, nil
	}
	type candidate struct{ id, source string }
	var order []candidate
	if ownerAlive {
		order = append(order, candidate{route.Owner, SourceOwner})
	}
	order = append(order, candidate{route.Backup, SourceBackup})
	if route.Owner != "" {
		order = append(order, candidate{n.buddyOf(route.Owner), SourceOwnersBuddy})
	}
	tried := map[string]bool{"": true}
	for _, c := range order {
		if tried[c.id] {
			continue
		}
		tried[c.id] = true
		if c.id == self {
			if cp, ok := n.takeLocal(id); ok {
				n.stats.fetched(SourceLocal)
				n.countFailover(route.Owner)
				return cp, true, nil
			}
			continue
		}
		if !n.reachable(c.id) {
			continue
		}
		if cp, ok := n.ask(ctx, c.id, id); ok {
			n.stats.fetched(c.source)
			n.countFailover(route.Owner)
			return cp, true, nil
		}
	}
	if cp, ok := n.takeLocal(id); ok {
		n.stats.fetched(SourceLocal)
		n.countFailover(route.Owner)
		return cp, true, nil
	}
	if cp, ok := n.scan(ctx, id, tried); ok {
		n.stats.fetched(SourceScan)
		n.countFailover(route.Owner)
		return cp, true, nil
	}
	n.stats.fetched(SourceNone)
	n.misses.add(id, time.Now())
	return nil, false, nil
}

func (n *Node) countFailover(owner string) {
	if owner != "" && owner != n.cfg.ID && !n.reachable(owner) {
		n.stats.failovers.Add(1)
	}
}

// reachable reports whether a peer may answer: not known dead or gone.
func (n *Node) reachable(id string) bool {
	n.view.mu.Lock()
	defer n.view.mu.Unlock()
	p, ok := n.view.peers[id]
	return ok && p.state != Dead && p.state != Left
}

// takeLocal turns this node's backup copy of id into a session it owns.
func (n *Node) takeLocal(id string) (*core.Change, bool) {
	c, _, ok := n.backups.take(id)
	return c, ok
}

// scan asks every live node not tried yet, at once, and keeps the highest
// version. The others give their copies up too.
func (n *Node) scan(ctx context.Context, id string, tried map[string]bool) (*core.Change, bool) {
	n.view.mu.Lock()
	var ids []string
	for pid, p := range n.view.peers {
		if !tried[pid] && p.state != Dead && p.state != Left {
			ids = append(ids, pid)
		}
	}
	n.view.mu.Unlock()
	var mu sync.Mutex
	var best *core.Change
	var wg sync.WaitGroup
	for _, pid := range ids {
		wg.Go(func() {
			if c, ok := n.ask(ctx, pid, id); ok {
				mu.Lock()
				if best == nil || c.Version > best.Version {
					best = c
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return best, best != nil
}

// ask requests session id from peer pid.
func (n *Node) ask(ctx context.Context, pid, id string) (*core.Change, bool) {
	p, ok := n.peer(pid)
	if !ok {
		return nil, false
	}
	out, _, err := n.call(ctx, p, pathFetch, MsgFetch, []byte(id))
	if err != nil {
		n.log.Debug("buddy: fetch failed", "peer", pid, "err", err)
		return nil, false
	}
	recs, err := DecodeBatch(out, n.cfg.Limits)
	if err != nil || len(recs) != 1 || recs[0].Kind != KindFull || recs[0].Change.ID != id {
		return nil, false
	}
	return recs[0].Change, true
}

// onFetch hands a session over to the node that asks for it: a session this
// node owns (it gives it up) or a backup copy it holds (dropped here).
func (n *Node) onFetch(from string, payload []byte) ([]byte, error) {
	id := string(payload)
	if len(id) == 0 || len(id) > MaxIDLen {
		return nil, &rejection{400, RejectMalformed, fmt.Errorf("%w: fetch of a %d-byte ID", ErrMalformed, len(id))}
	}
	var c *core.Change
	if m := n.mgr.Load(); m != nil {
		if got, ok := m.Surrender(id); ok {
			c = got
			n.stats.ownershipMoves.Add(1)
			// Our buddy's copy now belongs to the new owner's replication.
			n.sender.enqueue(Record{Kind: KindRemove, Change: &core.Change{ID: id, Removed: true}})
		}
	}
	if c == nil {
		if got, _, ok := n.backups.take(id); ok {
			c = got
		}
	}
	if c == nil {
		return AppendBatch(nil, nil), nil
	}
	return AppendBatch(nil, []Record{{Kind: KindFull, Change: c}}), nil
}

// missCache remembers IDs nobody held, for a short while, so a client that
// keeps sending a dead session's cookie does not make every request ask
// every node. Bounded: when full, it forgets everything.
type missCache struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const (
	missTTL = 30 * time.Second
	missMax = 65536
)

func (c *missCache) has(id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[id]
	return ok && now.Sub(t) < missTTL
}

func (c *missCache) add(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= missMax {
		c.m = make(map[string]time.Time)
	}
	c.m[id] = now
}

// transfer ops, the payload of MsgTransfer.
const (
	opPromote = 1 // take over as owner every copy you hold from me (I am leaving)
	opDrop    = 2 // drop every copy you hold from me (I have a new buddy)
)

// onTransfer handles a drain handover or a release from an owner.
func (n *Node) onTransfer(from string, payload []byte) ([]byte, error) {
	if len(payload) != 1 {
		return nil, &rejection{400, RejectMalformed, fmt.Errorf("%w: transfer payload", ErrMalformed)}
	}
	switch payload[0] {
	case opDrop:
		k := 0
		for _, id := range n.backups.ids(from) {
			n.backups.removeFrom(id, from)
			k++
		}
		return binary.AppendUvarint(nil, uint64(k)), nil
	case opPromote:
		n.markLeft(from)
		k, err := n.promote(from)
		if err != nil {
			return nil, err
		}
		return binary.AppendUvarint(nil, uint64(k)), nil
	}
	return nil, &rejection{400, RejectMalformed, fmt.Errorf("%w: transfer op %d", ErrMalformed, payload[0])}
}

// promote makes this node the owner of every copy it holds from owner and
// replicates them to its own buddy.
func (n *Node) promote(owner string) (int, error) {
	m := n.mgr.Load()
	if m == nil {
		return 0, fmt.Errorf("buddy: no manager bound, cannot take sessions over")
	}
	k := 0
	for _, id := range n.backups.ids(owner) {
		c, _, ok := n.backups.take(id)
		if !ok {
			continue
		}
		if err := m.Install(c); err != nil {
			n.log.Error("buddy: session not taken over", "id", id, "err", err)
			continue
		}
		n.sender.markForResync(id)
		k++
	}
	n.stats.promoted.Add(uint64(k))
	ctx, cancel := context.WithTimeout(n.ctx, 4*n.cfg.ReplicationTimeout)
	defer cancel()
	if err := n.sender.flush(ctx); err != nil {
		n.log.Warn("buddy: taken-over sessions not yet on our buddy", "err", err)
	}
	return k, nil
}
