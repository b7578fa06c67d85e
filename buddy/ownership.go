package buddy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// Ownership: how a session moves between nodes without ever being served
// by two owners that both acknowledge writes.
//
// A session has one owner, which holds it in its core.Manager, and a copy
// on the owner's buddy. Its ownership epoch (core.Change.Epoch) grows by
// one with every move: a failover fetch, a handover to a node that asks
// for it, a drain's promotion. Every record an owner sends carries the
// epoch it owns the session under; a node refuses (fences) a record from
// an older epoch than the one it knows, and the owner that receives the
// refusal gives the session up (its waiting commit fails with
// core.ErrSessionMoved, 503), so an owner that was paused or partitioned
// and missed a move cannot acknowledge a write in Sync mode.
//
// From one node's point of view a session is, per ID:
//
//	absent   nothing here.
//	fetching this node is fetching it for its requests (core's single
//	         flight): askers are told to ask again (pending).
//	owned    in core's store (core's handover.go: owned -> leaving ->
//	         moved). Askers get it once the requests holding it here are
//	         done; meanwhile they are told pending.
//	moved    given up to another node: the moves cache remembers where,
//	         and askers are redirected there.
//	copy     a backup copy from its owner (epoch, version).
//	fence    a copy handed out because its owner was gone: who took it and
//	         the epoch it took it under; the old owner's records are
//	         refused until the session would have expired.
//
// Transitions: absent -> fetching -> owned (a request here needs it);
// owned -> moved (a peer took it; or a fence from the buddy; or a copy
// from a newer epoch arrived); absent/copy -> copy (a record from its
// owner); copy -> fence (handed out to an asker, the owner being gone);
// copy -> owned (promotion when the owner drains); copy/fence -> absent
// (removal, drop, expiry). The hand-outs of one session and its
// promotion are serialized by the session's stripe of n.handoff.

// handoverWait bounds how long a node asked for a session waits for the
// requests holding it to finish before it hands the session over anyway.
func (n *Node) handoverWait() time.Duration {
	return min(n.cfg.ReplicationTimeout/2, time.Second)
}

// stripes serializes, per session, the hand-outs of a copy with its
// promotion.
type stripes struct {
	seed maphash.Seed
	mu   [64]sync.Mutex
}

func (s *stripes) lock(id string) func() {
	m := &s.mu[maphash.String(s.seed, id)%uint64(len(s.mu))]
	m.Lock()
	return m.Unlock
}

// onFetch answers a peer that asks for session id: it hands over a session
// this node owns (once the requests holding it here are done), or a backup
// copy whose owner is gone; for a session it moved, or a copy whose owner
// lives, it names the node to ask instead.
func (n *Node) onFetch(from string, payload []byte) ([]byte, error) {
	f, err := wire.DecodeFetch(payload)
	if err != nil {
		return nil, malformed(err)
	}
	if m := n.mgr.Load(); m != nil && !m.Proves(f.ID, f.Proof) {
		// Only a request that brought the session's cookie takes it: the
		// cluster key alone does not.
		return nil, &rejection{http.StatusForbidden, RejectProof, fmt.Errorf("fetch of %s without a cookie of it", f.ID)}
	}
	rep := n.handOver(from, f.Incarnation, f.ID)
	switch rep.Status {
	case wire.FetchFound:
		n.stats.handedOut.Add(1)
	case wire.FetchPending:
		n.stats.fetchPending.Add(1)
	}
	return wire.AppendFetchReply(nil, rep), nil
}

func (n *Node) handOver(from string, fromInc uint64, id string) wire.FetchReply {
	m := n.mgr.Load()
	if n.handingOver.Load() && m != nil {
		// Draining, and the buddy holds every session: it takes over those
		// this node still owns.
		if _, owned := m.Owned(id); owned {
			if to := n.sender.buddy(); to.ID != "" && to.ID != from {
				return redirect(to.ID)
			}
		}
	}
	rep, mv := n.handOverLocked(m, from, fromInc, id)
	if mv != nil {
		return n.awaitMove(mv, from)
	}
	return rep
}

func redirect(to string) wire.FetchReply {
	return wire.FetchReply{Status: wire.FetchRedirect, Redirect: to}
}

// handOverLocked is handOver under the session's stripe. A session this
// node owns is given up and its move started: the move is returned, for
// the caller to wait on without the stripe.
func (n *Node) handOverLocked(m *core.Manager, from string, fromInc uint64, id string) (wire.FetchReply, *move) {
	unlock := n.handoff.lock(id)
	defer unlock()
	if m != nil {
		if mv := n.moving.find(id, m.Successor(id)); mv != nil {
			if _, owned := m.Owned(mv.id); !owned || !isClosed(mv.done) {
				return wire.FetchReply{}, mv
			}
			n.moving.remove(mv) // it came back here since
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.handoverWait())
		c, held := m.Surrender(ctx, id)
		cancel()
		if c != nil {
			return n.startMove(m, c, from)
		}
		if held {
			return wire.FetchReply{Status: wire.FetchPending}, nil
		}
		if next := m.Successor(id); next != "" {
			// Regenerated here within the grace window, and the new
			// session moved on: the node it went to answers for the old ID.
			if to, _, moved := n.moves.get(next); moved && to != "" && to != from {
				return redirect(to), nil
			}
		}
	}
	// A copy (or fence) held here is newer knowledge than where this node
	// once sent the session: its owner replicated to this node since.
	e, ok := n.backups.lookup(id)
	switch {
	case !ok:
		if to, _, moved := n.moves.get(id); moved {
			switch {
			case to == "":
				return wire.FetchReply{Status: wire.FetchEnded}, nil
			case to == from:
				if c, ok := n.moves.given(id, from); ok {
					// The node this one gave the session to asks again:
					// the answer did not reach it. It gets the copy once
					// more (it refuses it if it knows a newer epoch).
					return wire.FetchReply{Status: wire.FetchFound, Copy: c}, nil
				}
			case n.view.answers(to):
				return redirect(to), nil
			}
		}
		if to := n.drainedTo.Load(); to != nil && *to != from {
			// Drained: the buddy took every session over.
			return redirect(*to), nil
		}
		return wire.FetchReply{Status: wire.FetchNone}, nil
	case e.ended:
		return wire.FetchReply{Status: wire.FetchEnded}, nil
	case e.fence:
		if e.holder != from && n.view.answers(e.holder) {
			return redirect(e.holder), nil
		}
		if e.holder == from {
			// The node the owner gave the session to asks for it: the
			// owner's answer never reached it. It gets the copy the fence
			// kept (it refuses it if it knows a newer epoch).
			if c, ok := n.backups.keptFor(id, from, n.cfg.Now().UnixNano()); ok {
				n.stats.failovers.Add(1)
				return wire.FetchReply{Status: wire.FetchFound, Copy: c, Backup: true}, nil
			}
		}
		return wire.FetchReply{Status: wire.FetchNone}, nil
	case e.holder == from && e.inc != 0 && e.inc == fromInc:
		// The copy's owner, in the run that sent it, does not hold the
		// session any more: it ended or moved there, and this copy is
		// stale. (A restarted owner is handed its copy back.)
		return wire.FetchReply{Status: wire.FetchNone}, nil
	case e.holder != from && n.ownerLives(e):
		// The owner lives: it has the newest copy.
		return redirect(e.holder), nil
	}
	return n.handOutCopy(id, e.holder, from), nil
}

// handOutCopy hands the backup copy of id from owner to node to, the
// owner being gone. A copy that became a fence meanwhile (its owner
// handed the session to another node: a move record came) sends to
// there.
func (n *Node) handOutCopy(id, owner, to string) wire.FetchReply {
	if c, ok := n.backups.handOut(id, owner, to); ok {
		n.stats.failovers.Add(1)
		return wire.FetchReply{Status: wire.FetchFound, Copy: c, Backup: true}
	}
	if e, ok := n.backups.lookup(id); ok && e.fence && !e.ended && e.holder != to {
		return redirect(e.holder)
	}
	return wire.FetchReply{Status: wire.FetchNone}
}

// A move is a handover waiting for the buddy's word. The owner gave the
// session up (core's Surrender) but hands the copy to the asker only once
// its buddy has turned its own copy into a fence for the asker (a
// KindMove record, acknowledged). The buddy is the one other node that
// could hand the session out, to a node that believes the owner dead; it
// does one or the other, never both, and a move that comes second is
// fenced and names the node that took the copy. Without that word, an
// owner slow to answer pings could give the session to one node while its
// buddy gave the copy to another: two owners under one epoch.
type move struct {
	id   string // the session moving (the new ID, when asked by an old one)
	to   string // the node it moves to
	copy *core.Change
	at   time.Time
	done chan struct{} // closed once the buddy answered (or did not)
	// reply is what the asker gets; written before done is closed.
	reply wire.FetchReply
}

// moves in progress, and those resolved whose asker has not had the
// answer yet (it gave up waiting; it asks again), per session ID.
type moving struct {
	mu sync.Mutex
	m  map[string]*move
}

// find returns the move of session id, or of its successor next.
func (mv *moving) find(id, next string) *move {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	if m, ok := mv.m[id]; ok {
		return m
	}
	if next != "" {
		return mv.m[next]
	}
	return nil
}

func (mv *moving) put(m *move) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	if mv.m == nil {
		mv.m = make(map[string]*move)
	}
	for id, old := range mv.m {
		// Resolved, and its asker never came back for the answer: the move
		// cache keeps the copy (for a while) and where it went.
		if isClosed(old.done) && time.Since(old.at) > moveCopyTTL {
			delete(mv.m, id)
		}
	}
	mv.m[m.id] = m
}

func (mv *moving) remove(m *move) {
	mv.mu.Lock()
	if mv.m[m.id] == m {
		delete(mv.m, m.id)
	}
	mv.mu.Unlock()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// startMove tells the buddy that session c, given up here, moves to node
// to. With no buddy (no other node answers) no other node holds a copy to
// hand out, and the move is final at once.
func (n *Node) startMove(m *core.Manager, c *core.Change, to string) (wire.FetchReply, *move) {
	b, q := n.sender.enqueue(wire.Record{Kind: wire.KindMove, Change: &core.Change{ID: c.ID, Epoch: c.Epoch}, To: to})
	switch q {
	case noBuddy:
		return n.moved(c, to), nil
	case queueFull:
		// The buddy cannot be told now: the session stays here, and the
		// asker asks again.
		n.takeBack(m, c)
		return wire.FetchReply{Status: wire.FetchPending}, nil
	}
	mv := &move{id: c.ID, to: to, copy: c, at: time.Now(), done: make(chan struct{})}
	n.moving.put(mv)
	if !n.spawn(func() { n.resolveMove(m, mv, b) }) {
		n.moving.remove(mv)
		return wire.FetchReply{Status: wire.FetchNone}, nil // closing: it holds nothing any more
	}
	return wire.FetchReply{}, mv
}

// moved records that session c went to node to, and returns the answer
// that gives it.
func (n *Node) moved(c *core.Change, to string) wire.FetchReply {
	n.stats.ownershipMoves.Add(1)
	// c.ID is not the ID asked for when that was regenerated within the
	// grace window: the asker gets the new session.
	n.moves.add(c.ID, to, c.Epoch, c, time.Now())
	return wire.FetchReply{Status: wire.FetchFound, Copy: c}
}

// takeBack owns session c again after a move that did not happen.
func (n *Node) takeBack(m *core.Manager, c *core.Change) {
	if err := m.Install(c); err != nil {
		n.log.Error("buddy: session given up for a handover not taken back", "id", c.ID, "err", err)
		return
	}
	n.sender.addResync([]string{c.ID})
}

// resolveMove waits for the buddy's answer to move mv and settles it: the
// buddy's fence is in place (the asker gets the session), or the buddy
// had handed its copy out already (the asker is sent to the node that has
// it), or the record reached no buddy (this node owns the session again;
// the asker asks again).
func (n *Node) resolveMove(m *core.Manager, mv *move, b *batch) {
	select {
	case <-b.done:
	case <-n.stop:
		<-b.done // the sender fails every batch as it stops
	}
	c := mv.copy
	switch {
	case b.fenced[c.ID]:
		// lost() recorded where the buddy says the session is.
		n.stats.movesRefused.Add(1)
		if to, _, ok := n.moves.get(c.ID); ok && to != "" {
			mv.reply = redirect(to)
		} else {
			n.moves.add(c.ID, "", c.Epoch, nil, time.Now())
			mv.reply = wire.FetchReply{Status: wire.FetchEnded}
		}
		n.log.Info("buddy: handover refused by the buddy: the session moved already", "id", c.ID, "to", mv.to, "status", mv.reply.Status, "redirect", mv.reply.Redirect)
	case b.err == nil || errors.Is(b.err, errAlone):
		// Acknowledged, or no other node answered when it was sent: none
		// holds a copy to hand out.
		mv.reply = n.moved(c, mv.to)
	case n.ctx.Err() != nil:
		mv.reply = wire.FetchReply{Status: wire.FetchNone}
	default:
		n.takeBack(m, c)
		mv.reply = wire.FetchReply{Status: wire.FetchPending}
	}
	close(mv.done)
	if mv.reply.Status != wire.FetchFound {
		n.moving.remove(mv) // nothing to keep for the asker
	}
}

// awaitMove answers asker from about move mv: once the buddy answered, the
// move's asker gets its answer (and the move is forgotten), another asker
// is sent where the session went; meanwhile, after handoverWait, askers
// are told to ask again.
func (n *Node) awaitMove(mv *move, from string) wire.FetchReply {
	t := time.NewTimer(n.handoverWait())
	defer t.Stop()
	select {
	case <-mv.done:
	case <-t.C:
		return wire.FetchReply{Status: wire.FetchPending}
	case <-n.stop:
		return wire.FetchReply{Status: wire.FetchPending}
	}
	if mv.to == from {
		n.moving.remove(mv)
		return mv.reply
	}
	if mv.reply.Status == wire.FetchFound {
		return redirect(mv.to)
	}
	return mv.reply
}

// ownerLives reports whether the owner of a backup copy still holds the
// session: it answers a ping now, is not draining, and runs as the
// incarnation that sent the copy (a restarted owner holds nothing). A node
// asked for a copy whose owner it still believes alive checks first: the
// asker usually comes because the owner just died, before this node
// noticed. A closing node, which can no longer ping, takes the owner for
// alive: the asker then asks the owner itself.
func (n *Node) ownerLives(e entry) bool {
	// Pinged whatever this node believes of it: it may have restarted, or
	// come back, and not pinged this node yet.
	p, ok := n.view.peer(e.holder)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, min(n.cfg.ReplicationTimeout/2, 500*time.Millisecond))
	defer cancel()
	pong, ok := n.probe(ctx, p)
	if !ok && n.ctx.Err() != nil {
		// This node is closing: its ping failed for that, and says
		// nothing of the owner. Taken for the owner's death, it would
		// hand out a copy the living owner has since written past.
		return true
	}
	return ok && !pong.Draining && (e.inc == 0 || pong.Incarnation == e.inc)
}

// applyBatch applies the records of a batch from owner from and returns
// the reply: the sessions that need a full copy, and those fenced.
func (n *Node) applyBatch(from string, recs []wire.Record) wire.BatchReply {
	var reply wire.BatchReply
	m := n.mgr.Load()
	inc := n.view.incarnation(from)
	now := n.cfg.Now()
	for _, r := range recs {
		clampTimes(r.Change, now)
		if m != nil {
			if st, owned := m.Owned(r.Change.ID); owned {
				if r.Change.Epoch <= st.Epoch {
					// This node owns the session under that epoch or a newer
					// one: the sender lost it, and any copy held here is a
					// leftover.
					n.backups.dropOlder(r.Change.ID, st.Epoch)
					n.stats.recordsFenced.Add(1)
					reply.Fenced = append(reply.Fenced, wire.Fence{ID: r.Change.ID, Holder: n.cfg.ID, Epoch: st.Epoch})
					continue
				}
				// The sender owns it under a newer epoch: this node missed
				// the move (it was paused or cut off).
				if m.Fence(r.Change.ID, r.Change.Epoch) {
					to := from
					if r.Kind == wire.KindMove {
						to = r.To
					}
					n.moves.add(r.Change.ID, to, r.Change.Epoch, nil, time.Now())
				}
			}
		}
		var out outcome
		var f wire.Fence
		if r.Kind == wire.KindMove {
			out, f = n.backups.move(from, r.Change.ID, r.Change.Epoch, r.To, n.cfg.ID, now.UnixNano())
		} else {
			out, f = n.backups.apply(from, inc, r)
		}
		switch out {
		case applied:
			n.stats.recordsApplied.Add(1)
			if m != nil && r.Kind == wire.KindFull && r.Change.PrevID != "" {
				// Regenerated on its owner: a request that reaches this
				// node with the old ID within the grace window gets the new
				// session (fetched from the owner).
				m.Regenerated(r.Change.PrevID, r.Change.ID)
			}
		case ignored:
			n.stats.recordsIgnored.Add(1)
		case gap:
			n.stats.gapsReported.Add(1)
			reply.NeedFull = append(reply.NeedFull, r.Change.ID)
		case fenced:
			n.stats.recordsFenced.Add(1)
			reply.Fenced = append(reply.Fenced, f)
		case full:
			n.stats.backupsRefused.Add(1)
			reply.Refused = append(reply.Refused, r.Change.ID)
		}
	}
	return reply
}

// clampTimes brings a record's timestamps from the future back to now.
func clampTimes(c *core.Change, now time.Time) {
	limit := now.Add(maxClockSkew) // later ones are taken as now: no copy outlives its session by more
	if c.Accessed.After(limit) {
		c.Accessed = now
	}
	if c.Created.After(limit) {
		c.Created = now
	}
}

// lost handles the buddy's refusal of sessions that another node owns
// under a newer epoch: this node gives them up. It returns their IDs.
func (n *Node) lost(fences []wire.Fence) []string {
	ids := make([]string, 0, len(fences))
	m := n.mgr.Load()
	for _, f := range fences {
		if f.Holder == n.cfg.ID {
			continue // a stale record of a session this node owns again
		}
		ids = append(ids, f.ID)
		if m != nil && m.Fence(f.ID, f.Epoch+1) {
			n.stats.fencedLocal.Add(1)
		}
		if f.Holder != "" && f.Holder != n.cfg.ID {
			n.moves.add(f.ID, f.Holder, f.Epoch, nil, time.Now())
		}
	}
	n.sender.forget(ids)
	return ids
}

// onTransfer handles a drain handover or a release from an owner.
func (n *Node) onTransfer(from string, payload []byte) ([]byte, error) {
	t, err := wire.DecodeTransfer(payload)
	if err != nil {
		return nil, malformed(err)
	}
	if inc := n.view.incarnation(from); t.Incarnation < inc {
		return nil, &rejection{409, RejectStale, fmt.Errorf("transfer from %s's incarnation %d; it runs as %d", from, t.Incarnation, inc)}
	}
	switch t.Op {
	case wire.TransferDrop:
		k := 0
		for _, id := range n.backups.ids(from) {
			if n.backups.removeFrom(id, from) {
				k++
			}
		}
		return wire.AppendCount(nil, uint64(k)), nil
	default: // wire.TransferPromote
		n.markLeft(from, t.Incarnation)
		k, err := n.promote(from)
		if err != nil {
			return nil, err
		}
		return wire.AppendCount(nil, uint64(k)), nil
	}
}

// promoteOne turns the backup copy of id from owner into a session this
// node owns, under the next epoch.
func (n *Node) promoteOne(m *core.Manager, id, owner string) bool {
	unlock := n.handoff.lock(id)
	defer unlock()
	if _, owned := m.Owned(id); owned {
		n.backups.removeFrom(id, owner) // this node's own copy is the newer
		return false
	}
	c, ok := n.backups.handOut(id, owner, n.cfg.ID)
	if !ok {
		return false
	}
	c.Epoch++
	c.Origin = core.Origin{From: owner, Reason: core.ReasonHandover}
	if err := m.Install(c); err != nil {
		c.Epoch--
		n.backups.restore(owner, n.view.incarnation(owner), c)
		n.log.Error("buddy: session not taken over", "id", id, "err", err)
		return false
	}
	n.sender.addResync([]string{id})
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

// moveCache remembers, for a while, to which node this node gave each
// session up, and under which epoch, so a late request for it here goes
// straight to the new owner and askers are redirected. For a shorter while
// it also keeps the copy it gave: if the node it gave the session to asks
// again, the answer did not reach it (it gave up waiting), and it gets the
// copy once more instead of losing the session. Bounded: when full, it
// forgets everything (askers then find the session by asking around), and
// it keeps copies of at most moveCopyBytes.
type moveCache struct {
	mu    sync.Mutex
	m     map[string]moved
	bytes int       // of the copies kept
	swept time.Time // when expired copies were last dropped
}

type moved struct {
	to    string
	epoch uint64 // the session's epoch when it was given up (0: not known)
	at    time.Time
	copy  *core.Change // the copy given, until moveCopyTTL
	size  int
}

const (
	moveTTL       = 5 * time.Minute
	moveMax       = 65536
	moveCopyTTL   = time.Minute
	moveCopyBytes = 64 << 20
)

// add records that session id went to node to under epoch; c is the copy
// given, or nil.
func (c *moveCache) add(id, to string, epoch uint64, cp *core.Change, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= moveMax {
		c.m, c.bytes = make(map[string]moved), 0
	}
	if old, ok := c.m[id]; ok {
		c.bytes -= old.size
	}
	if now.Sub(c.swept) > moveCopyTTL {
		c.swept = now
		for k, mv := range c.m {
			if mv.copy != nil && now.Sub(mv.at) > moveCopyTTL {
				c.bytes -= mv.size
				mv.copy, mv.size = nil, 0
				c.m[k] = mv
			}
		}
	}
	mv := moved{to: to, epoch: epoch, at: now}
	if cp != nil {
		if size := approxSize(cp); c.bytes+size <= moveCopyBytes {
			mv.copy, mv.size = cp, size
			c.bytes += size
		}
	}
	c.m[id] = mv
}

// get returns where session id went and under which epoch.
func (c *moveCache) get(id string) (to string, epoch uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mv, ok := c.m[id]
	if !ok || time.Since(mv.at) > moveTTL {
		return "", 0, false
	}
	return mv.to, mv.epoch, true
}

// given returns the copy of session id given to node to, if kept.
func (c *moveCache) given(id, to string) (*core.Change, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mv, ok := c.m[id]
	if !ok || mv.to != to || mv.copy == nil || time.Since(mv.at) > moveCopyTTL {
		return nil, false
	}
	return mv.copy, true
}

func (c *moveCache) forget(id string) {
	c.mu.Lock()
	if mv, ok := c.m[id]; ok {
		c.bytes -= mv.size
		delete(c.m, id)
	}
	c.mu.Unlock()
}
