package core

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// CommitHeader commits the request's changes while the response header is
// still open, and adds the session cookie to h when it must be sent. It runs
// once per request; later calls return the first result. Adapters call it
// just before the header is written; on error they answer with
// Manager.HandleError instead of the handler's response.
func (s *Session) CommitHeader(ctx context.Context, h http.Header) error {
	s.mu.Lock()
	if s.headerDone {
		err := s.headerErr
		s.mu.Unlock()
		return err
	}
	s.headerDone = true
	s.mu.Unlock()
	err := s.commit(ctx, h)
	s.mu.Lock()
	s.headerErr = err
	s.mu.Unlock()
	return err
}

// Finish commits what the request changed after the header went out. The
// cookie can no longer change then: a change that needed a new cookie (a
// new session, Regenerate, Invalidate) is still stored, and logged as a
// warning. Adapters call it when the handler returns.
func (s *Session) Finish(ctx context.Context) error {
	defer s.Release()
	err := s.commit(ctx, nil)
	if err != nil {
		s.m.log.Error("tandem: commit after the response header failed", "err", err)
	}
	return err
}

// HeaderCommitted reports whether CommitHeader ran.
func (s *Session) HeaderCommitted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headerDone
}

// commit stores the recorded changes, hands them to the replicator and waits
// for its acknowledgement. h is the open response header, or nil once it was
// sent.
func (s *Session) commit(ctx context.Context, h http.Header) error {
	m := s.m
	now := m.now()
	s.mu.Lock()
	var acks [2]Ack
	var err error
	if s.dirty {
		var stored bool
		acks, stored, err = s.store(now)
		if stored {
			m.stats.commits.Add(1)
		}
	} else if s.rec != nil {
		s.rec.touch(now)
		m.store.touched(s.rec)
		if m.toucher != nil {
			m.toucher.Touch(s.id, unixTime(now))
		}
		// What this request read may come from a commit that is not
		// replicated yet: it answers once that is, as the commit does.
		acks[0] = s.rec.pendingAck()
	}
	if err == nil {
		s.writeCookie(h, now)
	}
	evs := s.events
	s.events = nil
	s.mu.Unlock()
	// The changes are stored whatever the replication's outcome: their
	// events are reported once the waits are over.
	defer m.fire(ctx, evs)
	if err != nil {
		return err
	}
	for _, a := range acks {
		if a == nil {
			continue
		}
		if werr := a.Wait(ctx); werr != nil {
			return fmt.Errorf("tandem: session %s: %w", s.id, werr)
		}
	}
	if acks[1] != nil && s.rec != nil {
		s.rec.settled(s.pendingGen)
	}
	return nil
}

// store applies the recorded changes to the store. It runs under s.mu.
// stored reports whether it changed a session: created, changed,
// regenerated or ended one (it may then still fail, when a logout ended
// the old session and the new one could not be stored).
func (s *Session) store(now int64) (acks [2]Ack, stored bool, err error) {
	m := s.m
	var (
		base        attrList
		baseVersion uint64
		epoch       uint64 = 1
		created            = now
		prevID      string
		ended       bool // a logout ended the previous session
	)
	if p := s.prev; p != nil {
		p.mu.Lock()
		alive, moved := !p.dead, p.moved
		if alive && s.carry {
			base, baseVersion, epoch, created, prevID = p.attrs, p.version, p.epoch, p.created, p.id
		}
		if !alive && moved {
			p.mu.Unlock()
			return acks, false, ErrSessionMoved
		}
		p.dead = true
		if alive && !s.carry {
			m.recordEvent(&s.events, evInvalidated, p, ReasonLogout, now)
		}
		p.mu.Unlock()
		m.store.remove(p)
		m.unindex(p.id)
		ended = alive && !s.carry
		if ended && m.repl != nil {
			acks[0] = m.repl.Replicate(&Change{ID: p.id, Base: p.version, Version: p.version + 1, Epoch: p.epoch, Removed: true})
		}
		if !alive && s.carry {
			// A concurrent request ended the session first; its end wins.
			m.log.Debug("tandem: session ended by a concurrent request; changes dropped", "id", p.id)
			s.reset()
			s.id, s.invalidated = "", true
			return acks, false, nil
		}
		s.prev, s.carry = nil, false
	}
	if s.rec == nil {
		if prevID == "" && len(s.set) == 0 {
			s.reset() // nothing to store: an empty new session, or a plain logout
			return acks, ended, nil
		}
		attrs := s.merged(base)
		if err := m.checkSize(len(attrs), attrs.size()); err != nil {
			return acks, ended, err
		}
		if prevID == "" && m.draining.Load() {
			return acks, ended, ErrDraining
		}
		if !m.reserve(&s.events) {
			return acks, ended, ErrNodeFull
		}
		if s.cookieID == s.id {
			s.staleCookie = true // the client's cookie says "unsaved"
		}
		rec := &record{id: s.ensureID(), attrs: attrs, size: attrs.size(), version: baseVersion + 1, epoch: epoch, created: created}
		rec.accessed.Store(now)
		rec.returned.Store(prevID != "") // a renewed session came back: not a first visit
		rec.mu.Lock()
		m.store.insert(rec)
		m.indexRecord(rec)
		if prevID != "" {
			m.renamed(prevID, rec.id, now)
		}
		if prevID == "" {
			m.recordEvent(&s.events, evCreated, rec, "", now)
		} else if m.wants(evRegenerated) {
			e := m.event(rec, "", now)
			e.PrevID = prevID
			s.events = append(s.events, pendingEvent{evRegenerated, e})
		}
		if m.repl != nil {
			acks[1] = m.repl.Replicate(rec.fullChange(prevID))
			s.pendingGen = rec.setPending(acks[1])
		}
		rec.mu.Unlock()
		s.rec = rec
		s.reset()
		return acks, true, nil
	}
	rec := s.rec
	rec.mu.Lock()
	if rec.dead && rec.moved {
		rec.mu.Unlock()
		return acks, false, ErrSessionMoved
	}
	if rec.dead {
		if next := m.successor(rec.id, now); next != nil && next != rec {
			// Regenerated by a concurrent request (a login) within the
			// grace window: the changes go to the new session, and so
			// does the cookie.
			rec.mu.Unlock()
			s.rec, s.id, s.graced = next, next.id, true
			return s.store(now)
		}
		rec.mu.Unlock()
		m.log.Debug("tandem: session ended by a concurrent request; changes dropped", "id", rec.id)
		s.rec, s.id, s.invalidated = nil, "", true
		s.reset()
		return acks, false, nil
	}
	cur, curSize := rec.attrs, rec.size
	if s.clear {
		cur, curSize = nil, 0
	}
	n, size := projected(cur, curSize, s.set, s.del)
	if err := m.checkSize(n, size); err != nil {
		rec.mu.Unlock()
		return acks, false, err
	}
	_, userSet := s.set.get(userKey)
	_, userDel := s.del[userKey]
	set, del := s.apply(rec)
	if userSet || userDel || s.clear {
		m.indexRecord(rec)
	}
	c := &Change{
		ID: rec.id, Base: rec.version, Version: rec.version + 1, Epoch: rec.epoch,
		Clear: s.clear, Set: set, Deleted: del,
		Created: unixTime(rec.created), Accessed: unixTime(now),
	}
	rec.size, rec.version = size, c.Version
	rec.touch(now)
	if m.repl != nil {
		acks[1] = m.repl.Replicate(c)
		s.pendingGen = rec.setPending(acks[1])
	}
	rec.mu.Unlock()
	m.store.touched(rec)
	s.reset()
	return acks, true, nil
}

// reset forgets the recorded changes once they are stored.
func (s *Session) reset() {
	s.set, s.del, s.clear, s.dirty = nil, nil, false, false
}

// writeCookie adds the Set-Cookie header the commit calls for. It runs
// under s.mu. h is nil once the header went out: a cookie change is then
// logged instead.
func (s *Session) writeCookie(h http.Header, now int64) {
	m := s.m
	var value string
	maxAge := 0
	switch {
	case s.rec != nil && s.graced:
		// Served the session that replaced the cookie's within the grace
		// window: the new cookie went out with the login's response, and
		// is not handed to whoever else holds the old one.
		return
	case s.rec != nil:
		loc := m.location()
		loc.Epoch = s.rec.epoch // immutable once the record is stored
		if s.cookieID == s.id && s.route.sameCookie(loc) && !s.staleCookie {
			return
		}
		if h == nil {
			break
		}
		v, err := m.cookies.encode(payload{id: s.id, owner: loc.Owner, backup: loc.Backup, epoch: loc.Epoch})
		if err != nil { // only with keys NewManager would have rejected
			m.log.Error("tandem: cookie not encoded", "err", err)
			return
		}
		value, s.route = v, loc
		if m.cfg.Cookie.Persist {
			maxAge = max(int((s.rec.created+int64(m.cfg.Lifetime)-now)/1e9), 1)
		}
	case s.invalidated:
		if s.cookieID == "" {
			return
		}
		maxAge = -1 // delete the cookie
	case s.isNew && !m.cfg.Cookie.Lazy && h != nil && (s.cookieID == "" || s.staleCookie):
		// Issue the new session's cookie with the header, so that what the
		// handler stores after the body started is still found next time.
		loc := m.location()
		v, err := m.cookies.encode(payload{id: s.ensureID(), owner: loc.Owner, backup: loc.Backup, unsaved: true})
		if err != nil {
			m.log.Error("tandem: cookie not encoded", "err", err)
			return
		}
		value, s.route = v, loc
		if m.cfg.Cookie.Persist {
			maxAge = int(m.cfg.Lifetime / time.Second)
		}
	default:
		return
	}
	if h == nil {
		if s.cookieID == s.id {
			// Only the route or the key changed: the next response updates it.
			m.log.Debug("tandem: cookie update deferred: the response header was sent", "session", s.id)
		} else {
			m.log.Warn("tandem: session cookie changed after the response header was sent; the client keeps its old cookie", "session", s.id)
		}
		return
	}
	h.Add("Set-Cookie", m.newCookie(value, maxAge).String())
	if rn := m.cfg.Cookie.RouteName; rn != "" {
		rc := m.newCookie(m.routeValue(s.route.Owner), maxAge)
		rc.Name = rn
		if value == "" || rc.Value == "" {
			rc.Value, rc.MaxAge = "", -1
		}
		h.Add("Set-Cookie", rc.String())
	}
	s.cookieID, s.staleCookie = s.id, false
	if maxAge < 0 {
		s.cookieID = ""
	}
}
