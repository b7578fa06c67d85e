package buddy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
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
// session at a time. A backup copy is handed out only when its owner is
// gone; while the owner lives, the holder points the asker to it instead,
// so a stale copy never wins over the owner's. Unknown IDs are remembered
// for a while, so repeated lookups cost nothing.
func (n *Node) Fetch(ctx context.Context, id string, route core.Route, local uint64) (*core.Change, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicationTimeout)
	defer cancel()
	self := n.cfg.ID
	ownerAlive := route.Owner != "" && route.Owner != self && n.reachable(route.Owner)
	if local > 0 || route.Unsaved {
		// This node holds a copy, or the cookie was issued before anything
		// was stored: only a live owner elsewhere can hold a newer one.
		if !ownerAlive {
			return nil, false, nil
		}
		if c, ok := n.askChain(ctx, route.Owner, id, map[string]bool{self: true}, map[string]bool{}); ok && c.Version > local {
			n.stats.fetched(SourceOwner)
			n.moves.forget(id)
			return c, true, nil
		}
		return nil, false, nil
	}
	type candidate struct{ id, source string }
	var order []candidate
	if to, ok := n.moves.get(id); ok && to != self {
		// This node gave the session to another: that one, or whoever it
		// gave it to, holds the newest copy.
		order = append(order, candidate{to, SourceOwner})
	}
	if ownerAlive {
		order = append(order, candidate{route.Owner, SourceOwner})
	}
	order = append(order, candidate{route.Backup, SourceBackup})
	if route.Owner != "" {
		order = append(order, candidate{n.buddyOf(route.Owner), SourceOwnersBuddy})
	}
	order = append(order, candidate{self, SourceLocal})
	tried := map[string]bool{"": true}
	silent := map[string]bool{} // peers that did not answer
	for _, c := range order {
		if tried[c.id] {
			continue
		}
		if c.id == self {
			tried[self] = true
			cp, redirect, ok := n.takeLocal(id)
			if ok {
				n.stats.fetched(SourceLocal)
				n.countFailover(route.Owner, silent)
				n.moves.forget(id)
				return cp, true, nil
			}
			if redirect == "" || tried[redirect] && !silent[redirect] {
				continue
			}
			// Our copy's owner lives: it has the newest. If it does not
			// answer at all, it is gone and our copy is the newest.
			var err error
			if silent[redirect] {
				err = errSilent
			} else {
				cp, _, err = n.ask(ctx, redirect, id)
				tried[redirect] = true
			}
			if err != nil {
				cp, _, ok = n.backups.take(id)
				if ok {
					n.stats.fetched(SourceLocal)
					n.countFailover(route.Owner, silent)
					n.moves.forget(id)
					return cp, true, nil
				}
			}
			if cp != nil {
				n.stats.fetched(SourceOwner)
				n.moves.forget(id)
				return cp, true, nil
			}
			continue
		}
		if !n.reachable(c.id) {
			tried[c.id] = true
			continue
		}
		if cp, ok := n.askChain(ctx, c.id, id, tried, silent); ok {
			n.stats.fetched(c.source)
			n.countFailover(route.Owner, silent)
			n.moves.forget(id)
			return cp, true, nil
		}
	}
	if n.misses.has(id, time.Now()) {
		// Nobody had it a moment ago: do not ask every node again. The
		// targeted asks above still ran, so a session that moved is found.
		return nil, false, nil
	}
	if cp, ok := n.scan(ctx, id, tried); ok {
		n.stats.fetched(SourceScan)
		n.countFailover(route.Owner, silent)
		n.moves.forget(id)
		return cp, true, nil
	}
	n.stats.fetched(SourceNone)
	n.misses.add(id, time.Now())
	return nil, false, nil
}

func (n *Node) countFailover(owner string, silent map[string]bool) {
	if owner != "" && owner != n.cfg.ID && (silent[owner] || !n.reachable(owner)) {
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

// takeLocal turns this node's backup copy of id into a session it owns,
// unless the copy's owner is alive: then it returns that owner to ask.
func (n *Node) takeLocal(id string) (c *core.Change, redirect string, ok bool) {
	owner, held := n.backups.ownerOf(id)
	if !held {
		return nil, "", false
	}
	if owner != n.cfg.ID && n.reachable(owner) {
		return nil, owner, false
	}
	c, _, ok = n.backups.take(id)
	return c, "", ok
}

// errSilent stands for a peer that did not answer a fetch.
var errSilent = errors.New("buddy: peer did not answer")

// askChain asks peer pid for session id and follows its redirects to the
// session's owner, never asking a node twice; peers that do not answer are
// noted in silent.
func (n *Node) askChain(ctx context.Context, pid, id string, tried, silent map[string]bool) (*core.Change, bool) {
	for pid != "" && !tried[pid] {
		tried[pid] = true
		c, redirect, err := n.ask(ctx, pid, id)
		if err != nil {
			silent[pid] = true
		}
		if err == nil && c != nil {
			return c, true
		}
		pid = redirect
	}
	return nil, false
}

// scan asks every live node not tried yet, at once, and keeps the highest
// version.
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
			if c, _, err := n.ask(ctx, pid, id); err == nil && c != nil {
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

// Fetch replies: a status byte, then a batch of one full copy (found) or the
// owner's ID (redirect).
const (
	fetchNone     = 0
	fetchFound    = 1
	fetchRedirect = 2
)

// ask requests session id from peer pid. It returns the copy, or the node
// to ask instead, or neither (the peer holds nothing); err means the peer
// did not answer.
func (n *Node) ask(ctx context.Context, pid, id string) (c *core.Change, redirect string, err error) {
	p, known := n.peer(pid)
	if !known {
		return nil, "", fmt.Errorf("buddy: unknown peer %q", pid)
	}
	out, _, err := n.call(ctx, p, pathFetch, wire.MsgFetch, []byte(id))
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: empty fetch reply", wire.ErrMalformed)
	}
	if err != nil {
		n.log.Debug("buddy: fetch failed", "peer", pid, "err", err)
		return nil, "", err
	}
	switch out[0] {
	case fetchFound:
		recs, err := wire.DecodeBatch(out[1:], n.cfg.Limits)
		if err != nil || len(recs) != 1 || recs[0].Kind != wire.KindFull || recs[0].Change.ID != id {
			return nil, "", fmt.Errorf("%w: fetch reply from %s", wire.ErrMalformed, pid)
		}
		return recs[0].Change, "", nil
	case fetchRedirect:
		if r := string(out[1:]); len(r) <= wire.MaxIDLen {
			return nil, r, nil
		}
	}
	return nil, "", nil
}

// onFetch hands a session over to the node that asks for it: a session this
// node owns (it gives it up), or a backup copy whose owner is gone (dropped
// here). For a backup copy whose owner lives, it names the owner instead.
func (n *Node) onFetch(from string, payload []byte) ([]byte, error) {
	id := string(payload)
	if len(id) == 0 || len(id) > wire.MaxIDLen {
		return nil, malformed(fmt.Errorf("%w: fetch of a %d-byte ID", wire.ErrMalformed, len(id)))
	}
	var c *core.Change
	n.handoff.Lock() // not while promote moves this session from backup to owned
	defer n.handoff.Unlock()
	if n.handingOver.Load() {
		// Draining: the buddy is taking every session over.
		if to := n.sender.buddy(); to.ID != "" && to.ID != from {
			return append([]byte{fetchRedirect}, to.ID...), nil
		}
	}
	if m := n.mgr.Load(); m != nil {
		if got, ok := m.Surrender(id); ok {
			c = got
			n.stats.ownershipMoves.Add(1)
			// Our buddy's copy now belongs to the new owner's replication.
			n.sender.enqueue(wire.Record{Kind: wire.KindRemove, Change: &core.Change{ID: id, Removed: true}})
		}
	}
	if c != nil {
		n.moves.add(id, from, time.Now())
	}
	if c == nil {
		if to, ok := n.moves.get(id); ok && to != from && n.reachable(to) {
			return append([]byte{fetchRedirect}, to...), nil
		}
		if owner, held := n.backups.ownerOf(id); held && owner != from && n.reachable(owner) && n.answers(owner) {
			return append([]byte{fetchRedirect}, owner...), nil
		}
		if got, _, ok := n.backups.take(id); ok {
			c = got
		}
	}
	if c == nil {
		return []byte{fetchNone}, nil
	}
	return wire.AppendBatch([]byte{fetchFound}, []wire.Record{{Kind: wire.KindFull, Change: c}}), nil
}

// moveCache remembers, for a while, to which node this node gave each
// session up, so a late request for it here goes straight to the new owner
// and a stale copy elsewhere never wins. Bounded like missCache.
type moveCache struct {
	mu sync.Mutex
	m  map[string]moved
}

type moved struct {
	to string
	at time.Time
}

const moveTTL = 5 * time.Minute

func (c *moveCache) add(id, to string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= missMax {
		c.m = make(map[string]moved)
	}
	c.m[id] = moved{to, now}
}

func (c *moveCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mv, ok := c.m[id]
	if !ok || time.Since(mv.at) > moveTTL {
		return "", false
	}
	return mv.to, true
}

func (c *moveCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// answers reports whether peer id answers a ping now. A node asked for a
// backup copy whose owner it still believes alive checks first: the asker
// usually comes because the owner just died, before this node noticed.
func (n *Node) answers(id string) bool {
	p, ok := n.peer(id)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, min(n.cfg.ReplicationTimeout/2, 500*time.Millisecond))
	defer cancel()
	out, _, err := n.call(ctx, p, pathPing, wire.MsgPing, appendPing(nil, n.incarnation, n.draining.Load()))
	if err != nil {
		n.observe(id, 0, false, false)
		return false
	}
	inc, draining, err := decodePing(out)
	if err != nil {
		return false
	}
	n.observe(id, inc, draining, true)
	return !draining
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
		return nil, malformed(fmt.Errorf("%w: transfer payload", wire.ErrMalformed))
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
	return nil, malformed(fmt.Errorf("%w: transfer op %d", wire.ErrMalformed, payload[0]))
}

// promoteOne turns the backup copy of id from owner into a session this
// node owns. Fetches wait meanwhile, so the session is in exactly one place.
func (n *Node) promoteOne(m *core.Manager, id, owner string) bool {
	n.handoff.Lock()
	defer n.handoff.Unlock()
	c, from, ok := n.backups.take(id)
	if !ok {
		return false
	}
	if from != owner {
		n.backups.apply(from, wire.Record{Kind: wire.KindFull, Change: c}) // not ours to promote: put it back
		return false
	}
	if err := m.Install(c); err != nil {
		n.backups.apply(from, wire.Record{Kind: wire.KindFull, Change: c})
		n.log.Error("buddy: session not taken over", "id", id, "err", err)
		return false
	}
	n.sender.markForResync(id)
	return true
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
		if n.promoteOne(m, id, owner) {
			k++
		}
	}
	n.stats.promoted.Add(uint64(k))
	ctx, cancel := context.WithTimeout(n.ctx, 4*n.cfg.ReplicationTimeout)
	defer cancel()
	if err := n.sender.flush(ctx); err != nil {
		n.log.Warn("buddy: taken-over sessions not yet on our buddy", "err", err)
	}
	return k, nil
}
