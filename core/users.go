package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// UserKey is the reserved attribute holding the user a session is bound
// to (Session.SetUser): it replicates like any attribute, and the cluster
// reads it in backup copies. Applications use SetUser and User.
const UserKey = userKey

const userKey = "\x00user"

// MaxUserLen is the longest user name SetUser accepts, in bytes.
const MaxUserLen = 256

// UserLimitPolicy says what Session.SetUser does when the user already
// holds Limits.MaxSessionsPerUser sessions.
type UserLimitPolicy uint8

const (
	// LimitReject refuses the new login: SetUser fails with
	// ErrTooManySessions and binds nothing (Spring Security's
	// maxSessionsPreventsLogin).
	LimitReject UserLimitPolicy = iota
	// LimitEndOldest ends the user's oldest sessions (by creation) to make
	// room: they are invalidated with ReasonLimit, wherever they live.
	LimitEndOldest
)

// SessionInfo describes one session of a user, as Manager.UserSessions
// lists it.
type SessionInfo struct {
	// ID is the session ID.
	ID string
	// Node is the node that owns the session ("" for a single node without
	// a Locator). For a copy found on a backup (Backup set), the owner that
	// did not answer.
	Node string
	// Created is when the session was created.
	Created time.Time
	// Accessed is the session's last access as the answering node knows it
	// (a backup learns of reads late, by TouchInterval at most).
	Accessed time.Time
	// Backup: the session was found as a backup copy because its owner
	// is gone; the next request for it moves it to a live node.
	Backup bool
}

// UserDirectory is implemented by replicators that can list and end a
// user's sessions on every node (package buddy's Node). Both methods
// return what the nodes that answered hold, and an error wrapping
// ErrIncomplete (an *IncompleteError) when some did not answer in time.
type UserDirectory interface {
	// UserSessions lists user's sessions on every node.
	UserSessions(ctx context.Context, user string) ([]SessionInfo, error)
	// EndUserSessions ends user's sessions on every node: those of ids,
	// or all of them when ids is nil, reporting reason to
	// Events.OnInvalidated. It returns how many it ended.
	EndUserSessions(ctx context.Context, user string, ids []string, reason Reason) (int, error)
}

// IncompleteError is the error of a cluster-wide query that some nodes
// did not answer in time: the result holds what the others said. It wraps
// ErrIncomplete.
type IncompleteError struct {
	// Unanswered lists the nodes that did not answer, sorted.
	Unanswered []string
}

// Error names the nodes that did not answer.
func (e *IncompleteError) Error() string {
	return fmt.Sprintf("%v: no answer from %s", ErrIncomplete, strings.Join(e.Unanswered, ", "))
}

// Unwrap returns ErrIncomplete.
func (e *IncompleteError) Unwrap() error { return ErrIncomplete }

// userIndex maps users to the IDs of the sessions this node owns, and
// back. Entries are checked against the store when read, so a stale one
// costs a lookup, never a wrong answer.
type userIndex struct {
	mu     sync.Mutex
	byUser map[string]map[string]struct{}
	byID   map[string]string
	n      atomic.Int64 // len(byID): while 0, nothing is looked up or locked
}

// empty reports whether no session is indexed: an application that never
// calls SetUser pays no lock for the index.
func (x *userIndex) empty() bool { return x.n.Load() == 0 }

// set records that session id is bound to user ("" for none).
func (x *userIndex) set(id, user string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byID[id]; ok {
		if old == user {
			return
		}
		x.drop(old, id)
	}
	if user == "" {
		return
	}
	if x.byID == nil {
		x.byID, x.byUser = make(map[string]string), make(map[string]map[string]struct{})
	}
	x.byID[id] = user
	x.n.Add(1)
	ids := x.byUser[user]
	if ids == nil {
		ids = make(map[string]struct{})
		x.byUser[user] = ids
	}
	ids[id] = struct{}{}
}

// drop removes the entry of id under user. It runs under x.mu.
func (x *userIndex) drop(user, id string) {
	delete(x.byID, id)
	x.n.Add(-1)
	if ids := x.byUser[user]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(x.byUser, user)
		}
	}
}

// ids returns the IDs indexed under user.
func (x *userIndex) ids(user string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, 0, len(x.byUser[user]))
	for id := range x.byUser[user] {
		out = append(out, id)
	}
	return out
}

// forget removes id from the index if it is indexed under user.
func (x *userIndex) forget(id, user string) {
	x.mu.Lock()
	if x.byID[id] == user {
		x.drop(user, id)
	}
	x.mu.Unlock()
}

// unindex removes session id from the user index: it is no longer owned
// here.
func (m *Manager) unindex(id string) {
	if !m.users.empty() {
		m.users.set(id, "")
	}
}

// indexRecord indexes rec under its user. It runs under rec.mu.
func (m *Manager) indexRecord(rec *record) {
	if u := rec.attrs.str(userKey); u != "" || !m.users.empty() {
		m.users.set(rec.id, u)
	}
}

// ownedOf returns the live records this node owns for user, each locked
// by fn's caller in turn; stale index entries are dropped.
func (m *Manager) ownedOf(user string, fn func(rec *record)) {
	now := m.now()
	for _, id := range m.users.ids(user) {
		rec, ok := m.store.get(id, now)
		if !ok {
			m.users.forget(id, user)
			continue
		}
		rec.mu.Lock()
		if rec.dead || rec.attrs.str(userKey) != user {
			rec.mu.Unlock()
			m.users.forget(id, user)
			continue
		}
		fn(rec)
		rec.mu.Unlock()
	}
}

// LocalUserSessions lists the sessions of user that this node owns. The
// cluster (package buddy) calls it to answer other nodes; applications
// call UserSessions.
func (m *Manager) LocalUserSessions(user string) []SessionInfo {
	var out []SessionInfo
	node := m.location().Owner
	m.ownedOf(user, func(rec *record) {
		out = append(out, SessionInfo{ID: rec.id, Node: node, Created: unixTime(rec.created), Accessed: unixTime(rec.accessed.Load())})
	})
	return out
}

// EndLocalUserSessions ends the sessions of user that this node owns:
// those of ids, or all of them when ids is nil, as Session.Invalidate
// would (their backups are dropped, and no copy of them comes back),
// reporting reason to Events.OnInvalidated. A session being handed to
// another node at that moment is left alone. It waits, within ctx, until
// the backups dropped their copies, and returns how many it ended. The
// cluster (package buddy) calls it to answer other nodes; applications
// call InvalidateUser.
func (m *Manager) EndLocalUserSessions(ctx context.Context, user string, ids []string, reason Reason) int {
	var want map[string]bool
	if ids != nil {
		want = make(map[string]bool, len(ids))
		for _, id := range ids {
			want[id] = true
		}
	}
	var (
		ended []*record
		acks  []Ack
		evs   []pendingEvent
	)
	now := m.now()
	m.ownedOf(user, func(rec *record) {
		if want != nil && !want[rec.id] || rec.leaving != nil {
			return
		}
		rec.dead = true
		if m.repl != nil {
			if a := m.repl.Replicate(&Change{ID: rec.id, Base: rec.version, Version: rec.version + 1, Epoch: rec.epoch, Removed: true}); a != nil {
				acks = append(acks, a)
			}
		}
		m.recordEvent(&evs, evInvalidated, rec, reason, now)
		ended = append(ended, rec)
	})
	for _, rec := range ended {
		m.store.remove(rec)
		m.unindex(rec.id)
	}
	for _, a := range acks {
		if err := a.Wait(ctx); err != nil {
			m.log.Warn("tandem: ended session's backup not confirmed", "user", user, "err", err)
			break
		}
	}
	m.fire(ctx, evs)
	return len(ended)
}

// BackupEnded reports to Events.OnInvalidated that this node ended the
// backup copy of session id, whose owner is gone (InvalidateUser reached
// the copy rather than the session). The cluster calls it.
func (m *Manager) BackupEnded(ctx context.Context, id string, created time.Time, set []Attr, reason Reason) {
	if !m.wants(evInvalidated) {
		return
	}
	e := Event{ID: id, Node: m.location().Owner, User: userOf(set), Reason: reason, Created: created, At: m.cfg.Now()}
	m.fireOne(ctx, pendingEvent{evInvalidated, e})
}

// userOf returns the user bound in a session's attributes, or "".
func userOf(set []Attr) string {
	for _, a := range set {
		if a.Key == userKey {
			return string(a.Value)
		}
	}
	return ""
}

func checkUser(user string) error {
	if user == "" || len(user) > MaxUserLen {
		return fmt.Errorf("%w: user of %d bytes (1 to %d)", ErrInvalidUser, len(user), MaxUserLen)
	}
	return nil
}

// UserSessions lists the sessions bound to user (Session.SetUser) on every
// node of the cluster, oldest first: with a UserDirectory replicator
// (package buddy) it asks every live node, within ctx and the
// replicator's timeout, and a node that is gone is answered for by the
// node holding its backups; without one it lists this node's. When some
// node did not answer, the list holds what the others said and the error
// wraps ErrIncomplete (an *IncompleteError names the nodes).
func (m *Manager) UserSessions(ctx context.Context, user string) ([]SessionInfo, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	var out []SessionInfo
	var err error
	if m.dir != nil {
		out, err = m.dir.UserSessions(ctx, user)
	} else {
		out = m.LocalUserSessions(user)
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, err
}

// InvalidateUser ends every session bound to user, on every node (log the
// user out everywhere), as UserSessions finds them, and returns how many
// it ended. Each is reported to Events.OnInvalidated with ReasonUser.
// When some node did not answer, the sessions it owns may live on, and the
// error wraps ErrIncomplete; call it again to retry. A session created or
// bound to user while it runs may survive it.
func (m *Manager) InvalidateUser(ctx context.Context, user string) (int, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	return m.endUserSessions(ctx, user, nil, ReasonUser)
}

func (m *Manager) endUserSessions(ctx context.Context, user string, ids []string, reason Reason) (int, error) {
	if m.dir != nil {
		return m.dir.EndUserSessions(ctx, user, ids, reason)
	}
	return m.EndLocalUserSessions(ctx, user, ids, reason), nil
}

// SetUser binds the session to user (a user ID, at most MaxUserLen
// bytes), or unbinds it when user is "": call it at login, after
// Regenerate. The binding is a reserved attribute, committed and
// replicated with the request like any other, so it survives failover,
// and Manager.UserSessions and InvalidateUser find the session on any
// node. User returns it; Keys does not list it; Clear and Invalidate
// remove it with the rest.
//
// With Limits.MaxSessionsPerUser set, SetUser first lists the user's
// sessions across the cluster (within ctx): when the user already holds
// that many other sessions, LimitReject fails with ErrTooManySessions and
// binds nothing, and LimitEndOldest ends the oldest ones to make room
// (ReasonLimit). Two logins at the same moment may both pass the check.
func (s *Session) SetUser(ctx context.Context, user string) error {
	if user == "" {
		s.mu.Lock()
		s.deleteLocked(userKey)
		s.mu.Unlock()
		return nil
	}
	if err := checkUser(user); err != nil {
		return err
	}
	m := s.m
	if limit := m.cfg.Limits.MaxSessionsPerUser; limit > 0 {
		s.mu.Lock()
		self, cookie := s.id, s.cookieID
		var prev string
		if s.prev != nil {
			prev = s.prev.id
		}
		s.mu.Unlock()
		list, err := m.UserSessions(ctx, user)
		if err != nil && !errors.Is(err, ErrIncomplete) {
			return err
		}
		others := slices.DeleteFunc(list, func(i SessionInfo) bool { return i.ID == self || i.ID == cookie || i.ID == prev })
		if excess := len(others) - limit + 1; excess > 0 {
			if m.cfg.Limits.UserLimit != LimitEndOldest {
				return fmt.Errorf("%w: %q holds %d sessions, limit %d", ErrTooManySessions, user, len(others), limit)
			}
			ids := make([]string, 0, excess)
			for _, i := range others[:excess] { // oldest first
				ids = append(ids, i.ID)
			}
			if _, err := m.endUserSessions(ctx, user, ids, ReasonLimit); err != nil && !errors.Is(err, ErrIncomplete) {
				return err
			}
		}
	}
	return s.setEncoded(userKey, []byte(user))
}

// User returns the user the session is bound to (SetUser), or "".
func (s *Session) User() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, _ := s.value(userKey)
	return string(v)
}
