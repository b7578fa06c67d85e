package core

import (
	"sync"
	"time"
)

// defaultRegenerateGrace is Config.RegenerateGrace's default.
const defaultRegenerateGrace = 10 * time.Second

// maxRenames bounds the renames remembered at once; when full, expired
// ones are dropped first, then everything (late requests with an old ID
// then get a fresh session, as without a grace window).
const maxRenames = 1 << 16

// renames maps the IDs that Regenerate replaced, for the grace window, to
// the IDs that replaced them.
type renames struct {
	mu   sync.Mutex
	m    map[string]rename
	back map[string]string // the new ID to the old one, for the same window
}

type rename struct {
	to    string
	until int64 // unix nanoseconds
}

// add records that id was replaced by to, until until.
func (r *renames) add(id, to string, until, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= maxRenames {
		for k, v := range r.m {
			if v.until <= now {
				delete(r.m, k)
			}
		}
		if len(r.m) >= maxRenames {
			r.m = nil
		}
		for k, v := range r.back {
			if _, ok := r.m[v]; !ok {
				delete(r.back, k)
			}
		}
	}
	if r.m == nil {
		r.m = make(map[string]rename)
	}
	if r.back == nil {
		r.back = make(map[string]string)
	}
	r.m[id] = rename{to, until}
	r.back[to] = id
}

// from returns the ID that to replaced within the grace window, and when
// the window ends.
func (r *renames) from(to string, now int64) (string, int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.back[to]
	if !ok {
		return "", 0, false
	}
	v, ok := r.m[id]
	if !ok || v.to != to || v.until <= now {
		delete(r.back, to)
		return "", 0, false
	}
	return id, v.until, true
}

// until returns when the window of id's rename ends, 0 if there is none.
func (r *renames) until(id string, now int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.m[id]; ok && v.until > now {
		return v.until
	}
	return 0
}

// get returns the ID that replaced id, within the grace window.
func (r *renames) get(id string, now int64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[id]
	if ok && v.until <= now {
		delete(r.m, id)
		if r.back[v.to] == id {
			delete(r.back, v.to)
		}
		return "", false
	}
	return v.to, ok
}

// renamed records that Regenerate (here, or on the node this copy came
// from) replaced id by to.
func (m *Manager) renamed(id, to string, now int64) {
	if m.cfg.RegenerateGrace > 0 {
		m.renames.add(id, to, now+int64(m.cfg.RegenerateGrace), now)
	}
}

// adoptRename records the rename a copy handed over carries (PrevID,
// PrevUntil): the window ends when it ends on the node that regenerated
// the session, never later than this node's own RegenerateGrace from now
// (a peer's clock or a hostile value cannot stretch it). asked is the ID
// the request brought; a copy without PrevUntil (from a node that does not
// send it) counts only when that was the old ID.
func (m *Manager) adoptRename(c *Change, asked string, now int64) {
	if c.PrevID == "" || m.cfg.RegenerateGrace <= 0 {
		return
	}
	until := now + int64(m.cfg.RegenerateGrace)
	switch {
	case !c.PrevUntil.IsZero():
		until = min(until, c.PrevUntil.UnixNano())
	case c.PrevID != asked:
		return
	}
	if until > now {
		m.renames.add(c.PrevID, c.ID, until, now)
	}
}

// successor returns the live record that replaced the record of id
// (regenerated within the grace window), or nil.
func (m *Manager) successor(id string, now int64) *record {
	for range 3 { // a session regenerated again within the window
		to, ok := m.renames.get(id, now)
		if !ok {
			return nil
		}
		if rec, ok := m.store.get(to, now); ok {
			rec.mu.Lock()
			dead := rec.dead
			rec.mu.Unlock()
			if !dead {
				return rec
			}
		}
		id = to
	}
	return nil
}

// Successor returns the ID that replaced session id at a Regenerate
// within Config.RegenerateGrace (on this node, or on the node this one
// fetched the new session from), or "". The cluster (package buddy) calls
// it to send a request with the old ID to the new session.
func (m *Manager) Successor(id string) string { return m.successorID(id, m.now()) }

// Regenerated records that the owner of a session this node backs up
// regenerated it, from id to to: within Config.RegenerateGrace, a request
// that reaches this node with id gets the session to. The cluster calls
// it.
func (m *Manager) Regenerated(id, to string) { m.renamed(id, to, m.now()) }

// successorID returns the ID that replaced id within the grace window,
// following renames, or "".
func (m *Manager) successorID(id string, now int64) string {
	out := ""
	for range 3 {
		to, ok := m.renames.get(id, now)
		if !ok {
			break
		}
		out, id = to, to
	}
	return out
}
