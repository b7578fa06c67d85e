package core

import (
	"context"
	"time"
)

// Reason says why an event happened (Event.Reason).
type Reason string

// Reasons of events.
const (
	// ReasonLogout: Session.Invalidate ended the session.
	ReasonLogout Reason = "logout"
	// ReasonUser: Manager.InvalidateUser ended the session.
	ReasonUser Reason = "user"
	// ReasonLimit: a newer login of the same user ended the session
	// (Limits.MaxSessionsPerUser with LimitEndOldest).
	ReasonLimit Reason = "limit"
	// ReasonIdle: the session saw no request for Config.IdleTimeout (or
	// FirstVisitIdleTimeout).
	ReasonIdle Reason = "idle"
	// ReasonLifetime: the session reached Config.Lifetime.
	ReasonLifetime Reason = "lifetime"
	// ReasonEvicted: a first-visit session made room for a new one on a
	// node holding Limits.MaxSessions.
	ReasonEvicted Reason = "evicted"
	// ReasonBackupExpired: the session expired while its owner was gone;
	// the node holding its backup copy reports it.
	ReasonBackupExpired Reason = "backup_expired"
	// ReasonFailover: the session's owner was gone; this node took the
	// session over from its backup copy.
	ReasonFailover Reason = "failover"
	// ReasonHandover: the owner gave the session up to this node (a
	// request for it reached this node, or the owner drained).
	ReasonHandover Reason = "handover"
)

// Event describes one change in a session's life, as passed to the hooks
// of Events.
type Event struct {
	// ID is the session ID (for a regeneration, the new one).
	ID string
	// PrevID is the ID a regenerated session had before.
	PrevID string
	// Node is the node where the event happened: this node's ID as the
	// Replicator's Locator names it ("" for a single node without one).
	Node string
	// From is the node that handed the session over (OnTakenOver).
	From string
	// User is the user the session was bound to (Session.SetUser), or "".
	User string
	// Reason says why (see the Reason constants); "" for created and
	// regenerated.
	Reason Reason
	// Created is when the session was created.
	Created time.Time
	// At is when the event happened, by Config.Now.
	At time.Time
}

// Events are hooks called on a session's life; each nil hook is not
// called. Every event is reported once in the whole cluster, by one node:
//
//   - OnCreated: a new session was first stored, on the node that stored
//     it, on the request's goroutine after the commit (and its
//     replication) finished.
//   - OnRegenerated: Session.Regenerate gave the session a new ID; likewise
//     on the request's goroutine.
//   - OnInvalidated: the session was ended: Session.Invalidate (ReasonLogout,
//     on the request's goroutine), Manager.InvalidateUser (ReasonUser) or a
//     newer login of its user (ReasonLimit), on the goroutine that ended it.
//   - OnExpired: the session expired (ReasonIdle, ReasonLifetime) on its
//     owner, on the expiry sweeper's goroutine; its backup copy, dropped
//     with it, reports nothing. When the owner is gone and the backup copy
//     expires, the node holding the copy reports it
//     (ReasonBackupExpired). A first-visit session evicted to make room
//     reports ReasonEvicted, on the goroutine of the request or takeover
//     that made room.
//   - OnTakenOver: this node took the session over from another node,
//     ReasonFailover (its owner was gone: from the backup copy) or
//     ReasonHandover (the owner gave it up), on the goroutine that took
//     it: the request's that fetched it, or the replication handler's
//     when a draining node hands its sessions to its buddy.
//
// Hooks are called outside every lock of the session, after the change
// is stored, so a hook may use the Manager (but not the request's
// Session). The events of one session come in the order they happened on
// one node; events of a session that moved between nodes come from each
// node in turn and are not ordered across nodes. A hook runs on the
// goroutine named above and delays it: a slow OnCreated delays the
// response (the header waits), a slow OnExpired delays the next expiry
// sweep, a slow OnTakenOver delays the request that fetched the session or
// a drain. Hand slow work to a goroutine or a queue of your own. A hook
// that panics is recovered and logged. Events of a node that dies before
// it reports them (kill -9 right after a commit) are lost.
type Events struct {
	// OnCreated is called when a new session was first stored. Default
	// nil (not called).
	OnCreated func(ctx context.Context, e Event)
	// OnRegenerated is called when a session got a new ID. Default nil.
	OnRegenerated func(ctx context.Context, e Event)
	// OnInvalidated is called when a session was ended. Default nil.
	OnInvalidated func(ctx context.Context, e Event)
	// OnExpired is called when a session expired. Default nil.
	OnExpired func(ctx context.Context, e Event)
	// OnTakenOver is called when this node took a session over from
	// another node. Default nil.
	OnTakenOver func(ctx context.Context, e Event)
}

// eventKind selects the hook of an event.
type eventKind uint8

const (
	evCreated eventKind = iota
	evRegenerated
	evInvalidated
	evExpired
	evTakenOver
)

// pendingEvent is an event recorded under a lock, fired after.
type pendingEvent struct {
	kind eventKind
	e    Event
}

// hook returns the hook of kind k, or nil.
func (ev *Events) hook(k eventKind) func(context.Context, Event) {
	switch k {
	case evCreated:
		return ev.OnCreated
	case evRegenerated:
		return ev.OnRegenerated
	case evInvalidated:
		return ev.OnInvalidated
	case evExpired:
		return ev.OnExpired
	case evTakenOver:
		return ev.OnTakenOver
	}
	return nil
}

// wants reports whether a hook for kind k is set.
func (m *Manager) wants(k eventKind) bool { return m.cfg.Events.hook(k) != nil }

// event returns an event of rec, whose lock the caller holds, at now.
func (m *Manager) event(rec *record, reason Reason, now int64) Event {
	return Event{ID: rec.id, Node: m.location().Owner, User: rec.attrs.str(userKey), Reason: reason,
		Created: unixTime(rec.created), At: unixTime(now)}
}

// record appends an event of kind k to evs if its hook is set.
func (m *Manager) recordEvent(evs *[]pendingEvent, k eventKind, rec *record, reason Reason, now int64) {
	if evs == nil || !m.wants(k) {
		return
	}
	*evs = append(*evs, pendingEvent{k, m.event(rec, reason, now)})
}

// fire calls the hooks of evs, in order, with no lock held.
func (m *Manager) fire(ctx context.Context, evs []pendingEvent) {
	for _, pe := range evs {
		m.fireOne(ctx, pe)
	}
}

func (m *Manager) fireOne(ctx context.Context, pe pendingEvent) {
	h := m.cfg.Events.hook(pe.kind)
	if h == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("tandem: event hook panicked", "session", pe.e.ID, "panic", p)
		}
	}()
	h(ctx, pe.e)
}

// Origin says where a copy handed to Install, or returned by a Fetcher,
// came from (Change.Origin): the replicator sets it, and the manager
// reports the takeover to Events.OnTakenOver.
type Origin struct {
	// From is the node that handed the copy over.
	From string
	// Reason is ReasonFailover or ReasonHandover; "" reports nothing.
	Reason Reason
}

// BackupExpired reports to Events.OnExpired (ReasonBackupExpired) that
// this node dropped an expired backup copy of session id whose owner is
// gone: no other node reports its expiry. set holds the copy's
// attributes. The cluster (package buddy) calls it; applications do not.
func (m *Manager) BackupExpired(id string, created, accessed time.Time, set []Attr) {
	if !m.wants(evExpired) {
		return
	}
	e := Event{ID: id, Node: m.location().Owner, User: userOf(set), Reason: ReasonBackupExpired, Created: created, At: m.cfg.Now()}
	m.fireOne(context.Background(), pendingEvent{evExpired, e})
}
