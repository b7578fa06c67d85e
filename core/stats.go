package core

import "sync/atomic"

// Stats is a snapshot of a manager's counters. Counters only grow.
type Stats struct {
	// Sessions is the number of sessions this node owns now.
	Sessions int
	// Commits counts the requests whose session changes this node
	// committed: a session created, changed, regenerated or ended
	// (Invalidate). Each such request counts once, when its changes are
	// stored, whether or not the replicator then acknowledges them in time.
	// A request that only read its session, or whose changes were refused
	// (ErrSessionTooLarge, ErrNodeFull, ...), is not counted.
	Commits uint64
	// CookiesRejected counts session cookies that failed to decode:
	// tampered, truncated, expired, or sealed with keys this node does not
	// hold. Each became a fresh session. A rising count across a failover
	// means the nodes do not share their cookie Keys.
	CookiesRejected uint64
	// Fetched counts sessions brought here from another node.
	Fetched uint64
	// Gone counts valid cookies whose session no node held any more
	// (expired, ended, or lost with both its copies): each became a fresh
	// session.
	Gone uint64
	// Unavailable counts requests refused with ErrUnavailable because the
	// node holding their session could not hand it over in time.
	Unavailable uint64
	// Evicted counts first-visit sessions (no request came back with them)
	// removed to make room for a new one when the node held MaxSessions.
	Evicted uint64
}

type counters struct {
	commits, cookiesRejected, fetched, gone, unavailable, evicted atomic.Uint64
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats {
	c := &m.stats
	return Stats{
		Sessions:        m.Len(),
		Commits:         c.commits.Load(),
		CookiesRejected: c.cookiesRejected.Load(),
		Fetched:         c.fetched.Load(),
		Gone:            c.gone.Load(),
		Unavailable:     c.unavailable.Load(),
		Evicted:         c.evicted.Load(),
	}
}
