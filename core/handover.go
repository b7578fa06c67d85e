package core

import (
	"context"
	"fmt"
	"math"
)

// How a session moves between nodes, as the manager of one node sees it.
//
// Every session has an ownership epoch (Change.Epoch, written into the
// cookie too). A session is created at epoch 1 and every move to another
// node (failover, handover, promotion of a backup) gives it the next
// epoch; the replicator refuses changes from an older epoch, so two nodes
// never both acknowledge writes of one session.
//
// On this node a session's record is in one of these states:
//
//	absent ──fetch (once per session, however many requests wait)──> owned
//	owned  ──Surrender──> leaving ──(its requests are done, or ctx ends)──> moved
//	owned  ──Fence, or Install of a copy from a newer epoch──────────────> moved
//	owned  ──Invalidate, Regenerate (old ID), expiry───────────────────────> ended
//
// A request holds the record from Load until Release. Surrender marks the
// record leaving, so that new requests wait until the handover ends (and
// then follow the session to its new owner), and waits for the requests
// that hold it to finish, so their changes travel with the session instead
// of failing. Requests still holding a moved record fail their commit with
// ErrSessionMoved; requests on an ended record drop their changes (the
// concurrent end wins).

// enter makes the request a user of r, waiting while r is being handed
// over. It reports false when r is dead (moved or ended) by then, or ctx
// ended first.
func (r *record) enter(ctx context.Context) bool {
	r.mu.Lock()
	for r.leaving != nil && !r.dead {
		ch := r.leaving
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
		r.mu.Lock()
	}
	ok := !r.dead
	if ok {
		r.users++
	}
	r.mu.Unlock()
	return ok
}

// exit ends one request's use of r.
func (r *record) exit() {
	r.mu.Lock()
	r.users--
	if r.users == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
	r.mu.Unlock()
}

// Release ends the request's hold on its session: a handover of the
// session waits for the requests that hold it. Done and Finish release; an
// adapter calls Release itself only on paths that call neither (a handler
// that panicked). Release is idempotent.
func (s *Session) Release() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	if held != nil {
		held.exit()
	}
}

// Surrender gives up a session this node owns because another node takes
// it over: it waits until the requests holding the session here are done
// (new ones wait meanwhile), or ctx ends, and returns a full copy; the
// session is then gone from this node, and a request still holding it
// fails its commit with ErrSessionMoved.
//
// held reports whether the node holds the session at all: c is nil and
// held true when it cannot be handed over right now (it is being fetched
// or handed over already; ask again shortly). The cluster (package buddy)
// calls Surrender; applications do not.
func (m *Manager) Surrender(ctx context.Context, id string) (c *Change, held bool) {
	m.flightMu.Lock()
	_, fetching := m.flights[id]
	m.flightMu.Unlock()
	if fetching {
		return nil, true
	}
	rec, ok := m.store.get(id, m.now())
	if !ok {
		if next := m.successor(id, m.now()); next != nil {
			// Regenerated within the grace window: the asker's request
			// brought the old ID; it gets the new session, its copy naming
			// the old ID as PrevID.
			c, held = m.Surrender(ctx, next.id)
			if c != nil {
				c.PrevID = id
				if until := m.renames.until(id, m.now()); until > 0 {
					c.PrevUntil = unixTime(until)
				}
			}
			return c, held
		}
		return nil, false
	}
	rec.mu.Lock()
	if rec.dead {
		rec.mu.Unlock()
		return nil, false
	}
	if rec.leaving != nil {
		rec.mu.Unlock()
		return nil, true
	}
	rec.leaving = make(chan struct{})
	for rec.users > 0 && ctx.Err() == nil {
		if rec.idle == nil {
			rec.idle = make(chan struct{})
		}
		idle := rec.idle
		rec.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
		}
		rec.mu.Lock()
	}
	if rec.users > 0 {
		m.log.Debug("tandem: session handed over while requests held it", "id", id, "requests", rec.users)
	}
	c = rec.fullChange("")
	if prev, until, ok := m.renames.from(id, m.now()); ok {
		// Regenerated here (or on the node it came from) within the grace
		// window: the node it goes to serves the old ID too, until the
		// window's end.
		c.PrevID, c.PrevUntil = prev, unixTime(until)
	}
	rec.dead, rec.moved = true, true
	close(rec.leaving)
	rec.mu.Unlock()
	m.store.remove(rec)
	m.unindex(id)
	return c, true
}

// Fence ends this node's ownership of session id if it is older than
// epoch: another node owns the session under that epoch (its backup says
// so). Requests holding it fail their commit with ErrSessionMoved. It
// reports whether a record was fenced. The cluster calls it.
func (m *Manager) Fence(id string, epoch uint64) bool {
	fenced := m.giveUp(id, epoch)
	if fenced {
		m.log.Warn("tandem: session owned elsewhere under a newer epoch; this node's copy is dropped", "id", id, "epoch", epoch)
	}
	return fenced
}

// Moved ends this node's ownership of session id: another node took it
// over (a draining node's buddy took every session). Requests holding it
// fail their commit with ErrSessionMoved. It reports whether this node
// held the session. The cluster calls it.
func (m *Manager) Moved(id string) bool { return m.giveUp(id, math.MaxUint64) }

// giveUp drops the record of session id if its epoch is below epoch.
func (m *Manager) giveUp(id string, epoch uint64) bool {
	rec, ok := m.store.get(id, m.now())
	if !ok {
		return false
	}
	rec.mu.Lock()
	fenced := !rec.dead && rec.epoch < epoch
	if fenced {
		rec.dead, rec.moved = true, true
	}
	rec.mu.Unlock()
	if fenced {
		m.store.remove(rec)
		m.unindex(id)
	}
	return fenced
}

// Owned returns the stamp of session id if this node owns it.
func (m *Manager) Owned(id string) (Stamp, bool) {
	rec, ok := m.store.get(id, m.now())
	if !ok {
		return Stamp{}, false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.dead {
		return Stamp{}, false
	}
	return rec.stamp(), true
}

// flight is one fetch of a session from the cluster, shared by the
// requests that need the session meanwhile.
type flight struct {
	done    chan struct{}
	waiters int32 // requests waiting besides the one fetching
	rec     *record
	err     error
}

// lookup returns the record of session id for a request whose cookie
// names route, entered for the request: the one held here, or one fetched
// from the cluster. It returns nil when the session is gone, and an error
// wrapping ErrUnavailable when the cluster could not tell in time.
func (m *Manager) lookup(ctx context.Context, id string, route Route) (*record, error) {
	self := m.location().Owner
	now := m.now() // read again only after a wait: one clock read per request
	if to := m.successorID(id, now); to != "" {
		// Regenerated within the grace window (here, or on the node this
		// one fetched the new session from): the request gets the new
		// session, wherever it is now.
		id = to
	}
	for try := range 3 { // a record that dies while we wait for it is looked up again
		if try > 0 {
			now = m.now()
		}
		rec, ok := m.store.get(id, now)
		var local Stamp
		if ok {
			rec.mu.Lock()
			local, ok = rec.stamp(), !rec.dead
			rec.mu.Unlock()
		}

		switch {
		case ok && (m.fetcher == nil || !mayBeNewer(route, local, self)):
			if rec.enter(ctx) {
				m.store.returned(rec)
				return rec, nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
			}
			continue
		case m.fetcher == nil:
			return nil, nil
		case !ok && route.Unsaved && (route.Owner == self || route.Owner == ""):
			return nil, nil // issued here before anything was stored
		}
		if !ok {
			rec = nil
		}
		return m.fetch(ctx, id, route, rec)
	}
	return nil, fmt.Errorf("%w: session %s kept moving", ErrUnavailable, id)
}

// mayBeNewer reports whether another node may hold a newer copy of a
// session than the one held here (at local), given the request's cookie.
func mayBeNewer(route Route, local Stamp, self string) bool {
	if route.Owner == "" || route.Owner == self {
		return false
	}
	// Another node owned it when the cookie was issued. Under a newer
	// epoch than ours, its copy is newer; a cookie without an epoch cannot
	// tell, so ask.
	return route.Epoch == 0 || route.Epoch > local.Epoch
}

// fetch brings session id from the cluster, once at a time per session:
// requests that need it meanwhile wait for the same fetch. local is the
// record held here, if any. The record returned is entered once for every
// request that waited.
func (m *Manager) fetch(ctx context.Context, id string, route Route, local *record) (*record, error) {
	m.flightMu.Lock()
	if f, ok := m.flights[id]; ok {
		f.waiters++
		m.flightMu.Unlock()
		<-f.done // bounded: the fetch has its own deadline
		return f.rec, f.err
	}
	f := &flight{done: make(chan struct{})}
	m.flights[id] = f
	m.flightMu.Unlock()

	// One request's client going away must not fail the others waiting.
	rec, err := m.fetchOnce(context.WithoutCancel(ctx), id, route, local)

	m.flightMu.Lock()
	if rec != nil {
		rec.mu.Lock()
		dead := rec.dead
		if !dead {
			rec.users += 1 + f.waiters
		}
		rec.mu.Unlock()
		if dead {
			rec, err = nil, fmt.Errorf("%w: session %s moved again while it was fetched", ErrUnavailable, id)
		}
	}
	delete(m.flights, id)
	m.flightMu.Unlock()
	f.rec, f.err = rec, err
	close(f.done)
	return rec, err
}

// fetchOnce asks the cluster for a copy newer than local, installs it and
// replicates it in full to this node's backup.
func (m *Manager) fetchOnce(ctx context.Context, id string, route Route, local *record) (*record, error) {
	var stamp Stamp
	if local != nil {
		local.mu.Lock()
		stamp = local.stamp()
		local.mu.Unlock()
	}
	c, err := m.fetcher.Fetch(ctx, id, route, stamp)
	if c == nil && local == nil {
		// The cluster may have handed the session to this node meanwhile
		// (a drain's promotion): then it is here now.
		if rec, ok := m.store.get(id, m.now()); ok {
			rec.mu.Lock()
			dead := rec.dead
			rec.mu.Unlock()
			if !dead {
				return rec, nil
			}
		}
	}
	switch {
	case err != nil && local != nil && route.Epoch == 0:
		// A cookie from before epochs: the copy held here is served, as
		// it always was when the owner it names does not answer.
		return local, nil
	case err != nil:
		m.stats.unavailable.Add(1)
		m.log.Warn("tandem: session not located in time", "id", id, "err", err)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case c == nil && local != nil && route.Epoch == 0:
		return local, nil
	case c == nil:
		if local != nil {
			// The cookie names a newer owner, and no node holds the
			// session any more: it ended there. The copy here is stale.
			m.drop(local)
		}
		m.stats.gone.Add(1)
		return nil, nil
	}
	rec, err := m.installReport(ctx, c)
	if err == nil {
		// The owner regenerated the session within its grace window: the
		// other requests with the old ID get it here too, until the window
		// ends where it began.
		m.adoptRename(c, id, m.now())
	}
	if err != nil {
		m.log.Warn("tandem: fetched session not installed", "id", id, "err", err)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m.stats.fetched.Add(1)
	if m.store.deadline(rec) <= m.now() {
		return nil, nil
	}
	if m.repl != nil {
		rec.mu.Lock()
		ack := m.repl.Replicate(rec.fullChange(""))
		rec.mu.Unlock()
		if ack != nil {
			if err := ack.Wait(ctx); err != nil {
				m.log.Warn("tandem: fetched session not replicated", "id", id, "err", err)
			}
		}
	}
	return rec, nil
}

// drop removes a record that is no longer the session's newest copy.
func (m *Manager) drop(rec *record) {
	rec.mu.Lock()
	gone := !rec.dead
	rec.dead, rec.moved = true, true
	rec.mu.Unlock()
	if gone {
		m.store.remove(rec)
		m.unindex(rec.id)
	}
}
