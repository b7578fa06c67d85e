package core

import (
	"context"
	"time"
)

// Attr is one attribute: a key and its encoded value. Values handed out in a
// Change are never modified afterwards; a Replicator may keep them.
type Attr struct {
	Key   string
	Value []byte
}

// Change describes one committed change of one session: the delta a
// Replicator sends to the backup node.
//
// A delta (Full false) applies only to a copy at version Base: it removes
// every attribute when Clear is set, then deletes Deleted and stores Set. A
// full copy (Full true) replaces the whole session with Set. A removal
// (Removed true) deletes the session; Set and Deleted are then empty.
type Change struct {
	// ID is the session ID.
	ID string
	// PrevID, when not empty, is the ID the session had before it was
	// regenerated; that ID is dead and its copy must be dropped.
	PrevID string
	// PrevUntil, on a copy handed over with PrevID, is when the grace
	// window of that regeneration ends (Config.RegenerateGrace from the
	// login, on the node that regenerated it): until then a request with
	// PrevID gets this session on the node the copy went to. It travels
	// with the copy, so that moving the session does not extend the
	// window. Zero: the receiver counts its own RegenerateGrace from now.
	PrevUntil time.Time
	// Base is the version the delta applies to (0 for a new session).
	Base uint64
	// Version is the session's version after the change.
	Version uint64
	// Epoch is the session's ownership epoch: it grows by one every time
	// the session moves to another node (failover, handover, promotion), and
	// every change carries it, so a backup refuses the changes of an owner
	// that lost the session without knowing (paused, partitioned). See
	// buddy/PROTOCOL.md. A removal under an epoch means the session ended
	// (logout): no copy of it may come back. A removal with epoch 0 means
	// it expired: its copies expire too.
	Epoch uint64
	// Full means Set holds every attribute of the session.
	Full bool
	// Clear means every attribute was removed before Set was applied.
	Clear bool
	// Removed means the session is gone (invalidated or expired).
	Removed bool
	// Set holds the attributes written, sorted by key.
	Set []Attr
	// Deleted holds the keys removed, sorted.
	Deleted []string
	// Created is when the session was created (its absolute lifetime
	// counts from here).
	Created time.Time
	// Accessed is the last access (its idle timeout counts from here).
	Accessed time.Time
	// Origin, on a copy handed to Manager.Install or returned by a
	// Fetcher, says where it came from, for Events.OnTakenOver. It is not
	// replicated.
	Origin Origin
}

// Replicator receives every committed change. Package buddy implements it;
// a nil Config.Replicator means a single node.
//
// Replicate is called while the session is locked, so the calls for one
// session arrive in version order; it must queue the change and return
// without waiting on the network. The returned Ack (nil means nothing to wait
// for) is waited on after the lock is released and before the response
// header goes out; a replicator in synchronous mode returns once the backup
// holds the change. Ack.Wait may also never be called (changes from the
// expiry sweeper), so a Replicator must not depend on it.
type Replicator interface {
	Replicate(c *Change) Ack
}

// Ack is the outcome of one Replicate call.
type Ack interface {
	// Wait blocks until the change is acknowledged, fails, or ctx ends. An
	// error makes the request fail through Config.ErrorHandler; wrap
	// ErrReplication, so that the default handler answers it as a
	// replication failure.
	Wait(ctx context.Context) error
}

// Toucher is implemented by replicators that want to hear of reads, so the
// backup copy of a session in use does not expire. Touch is called on every
// request that only read its session; it must not block, and should throttle.
type Toucher interface {
	Touch(id string, accessed time.Time)
}

// Binder is implemented by replicators that need the manager they serve, for
// example to send a full copy when the backup reports a gap. NewManager calls
// Bind once, before it returns.
type Binder interface {
	Bind(m *Manager)
}

// Locator is implemented by replicators that know the cluster: which node
// this is and which node holds its backups. The IDs are written into the
// session cookie so any node can find a session it does not hold.
type Locator interface {
	Location() (owner, backup string)
}

// Route is where a session cookie says its session lives.
type Route struct {
	Owner  string
	Backup string
	// Epoch is the session's ownership epoch when the cookie was issued
	// (0 in cookies written before epochs existed).
	Epoch uint64
	// Unsaved: the cookie was issued before the session was stored, so
	// only Owner can hold it.
	Unsaved bool
	// Proof is the request's cookie value: a node asked for the session
	// hands it over only to a request that shows it (Manager.Proves), so
	// that knowing a session ID, or holding only the cluster key, is not
	// enough to take a session.
	Proof string
}

// sameCookie reports whether r and o would write the same cookie.
func (r Route) sameCookie(o Route) bool {
	return r.Owner == o.Owner && r.Backup == o.Backup && r.Epoch == o.Epoch && r.Unsaved == o.Unsaved
}

// Stamp orders the copies of one session: the higher epoch wins, and
// within an epoch the higher version.
type Stamp struct {
	Epoch   uint64
	Version uint64
}

// Less reports whether s is older than t.
func (s Stamp) Less(t Stamp) bool {
	return s.Epoch < t.Epoch || s.Epoch == t.Epoch && s.Version < t.Version
}

// Fetcher is implemented by replicators that can bring a session from
// another node (failover, or a session whose cookie names another owner).
//
// local is the stamp of the copy this node holds (zero for none). Fetch
// returns a full copy newer than local, which its previous holder gave up,
// with Epoch set to the epoch under which this node now owns it; or nil
// and a nil error when the cluster holds no newer copy (for local zero:
// the session is gone, expired, ended or lost with both its copies); or an
// error when that cannot be told in time (a holder that does not answer
// but is not known dead, a handover in progress). The manager answers such
// a request with ErrUnavailable rather than start a fresh session. The
// manager calls Fetch at most once at a time per session, installs the
// copy and replicates it in full.
type Fetcher interface {
	Fetch(ctx context.Context, id string, route Route, local Stamp) (*Change, error)
}
