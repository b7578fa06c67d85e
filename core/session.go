package core

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// flashPrefix starts the keys of flash messages. Keys starting with a NUL
// byte are reserved for Tandem and hidden from Keys.
const flashPrefix = "\x00flash."

// Session is one request's handle on its session. It records what the
// request changes; the middleware commits the changes when the response
// header goes out. A Session is safe for use by the goroutines of its
// request, and must not be kept after the request ends.
type Session struct {
	m  *Manager
	mu sync.Mutex

	id    string
	rec   *record // the stored session; nil when new or invalidated
	held  *record // the record Load entered for this request, until Release
	err   error   // why the session could not be loaded (ErrUnavailable)
	isNew bool
	route Route // owner, backup and epoch named by the request's cookie

	// Changes recorded since the last commit.
	// set is sorted by key like a stored session's attributes: one small
	// allocation for the usual one or two keys, where a map costs two and
	// an iterator per pass.
	set   attrList
	del   map[string]struct{}
	clear bool
	dirty bool
	// prev is the stored session whose ID dies at the next commit
	// (Regenerate, Invalidate); carry says its attributes move to the new ID.
	prev  *record
	carry bool
	// pendingGen is the generation of the replication this request's
	// commit waits for (record.setPending).
	pendingGen uint32

	// cookieID is the session ID the client's cookie holds ("" for none);
	// staleCookie says that cookie must be replaced anyway (sealed with an
	// old key, or marked unsaved). The commit sends a new cookie when these
	// differ from the session's ID, key or route.
	cookieID    string
	staleCookie bool
	invalidated bool

	events []pendingEvent // recorded by the commit, fired after it
	// graced: the request brought an ID regenerated within
	// RegenerateGrace and is served the new session; it gets no cookie
	// of it (the login's response carries it).
	graced bool

	headerDone bool  // CommitHeader ran
	headerErr  error // its result

	w   responseWriter // the net/http middleware's writer, allocated with the Session
	ctx sessionContext // the request context carrying the Session, likewise
}

// ID returns the session ID. A new session gets its ID here or when it is
// first committed.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ensureID()
}

func (s *Session) ensureID() string {
	if s.id == "" {
		s.id = newID()
	}
	return s.id
}

// Err reports why the request's session could not be loaded: nil, or an
// error wrapping ErrUnavailable when the session exists on another node
// that could not hand it over in time. Adapters check it before running
// the handler and answer with Manager.HandleError; the handler of such a
// request never runs, so it never mistakes the user for a new visitor.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// IsNew reports whether the request brought no valid session: it had no
// cookie, or a tampered, foreign or expired one, or its session was
// invalidated during this request.
func (s *Session) IsNew() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isNew
}

// source is the stored record reads fall through to.
func (s *Session) source() *record {
	if s.rec != nil {
		return s.rec
	}
	if s.carry {
		return s.prev
	}
	return nil
}

// value returns the encoded value of key as this request sees it.
func (s *Session) value(key string) ([]byte, bool) {
	if v, ok := s.set.get(key); ok {
		return v, true
	}
	if _, ok := s.del[key]; ok || s.clear {
		return nil, false
	}
	src := s.source()
	if src == nil {
		return nil, false
	}
	src.mu.Lock()
	v, ok := src.attrs.get(key)
	src.mu.Unlock()
	return v, ok
}

// Get decodes the value of key into dst, a pointer. It reports false when the
// key is absent (dst is then untouched).
func (s *Session) Get(key string, dst any) (bool, error) {
	s.mu.Lock()
	v, ok := s.value(key)
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := s.m.cfg.Codec.Unmarshal(v, dst); err != nil {
		return true, fmt.Errorf("tandem: decode %q: %w", key, err)
	}
	return true, nil
}

// Get returns the value of key decoded as a T, and whether the key was
// present. A missing key yields T's zero value and no error.
func Get[T any](s *Session, key string) (T, bool, error) {
	var v T
	ok, err := s.Get(key, &v)
	return v, ok, err
}

// Has reports whether key is set.
func (s *Session) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.value(key)
	return ok
}

// Set encodes v with the configured Codec and records it under key. It fails
// at once, changing nothing, when v cannot be encoded, the key is invalid,
// or the value or the session would exceed a limit.
func (s *Session) Set(key string, v any) error {
	if err := checkKey(key); err != nil {
		return err
	}
	b, err := s.m.cfg.Codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("tandem: encode %q: %w", key, err)
	}
	return s.setEncoded(key, b)
}

// SetRaw records a copy of v under key as the stored bytes themselves,
// without the Codec: the cheapest way to keep a value that is bytes already
// (a rendered fragment, a serialized token). Read it back with GetRaw; Get
// would hand those bytes to the Codec. It fails like Set.
func (s *Session) SetRaw(key string, v []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.setEncoded(key, append(make([]byte, 0, len(v)), v...))
}

// GetRaw returns a copy of the stored bytes of key (as SetRaw stored them,
// or as the Codec encoded a value Set stored), and whether it is present.
func (s *Session) GetRaw(key string) ([]byte, bool) {
	s.mu.Lock()
	v, ok := s.value(key)
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	return append(make([]byte, 0, len(v)), v...), true
}

func (s *Session) setEncoded(key string, b []byte) error {
	lim := s.m.cfg.Limits
	if len(b) > lim.MaxValueSize {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrValueTooLarge, key, len(b), lim.MaxValueSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, hadOld := s.set.get(key)
	delOld, wasDel := s.del[key]
	s.set.put(key, b)
	delete(s.del, key)
	if err := s.checkLimits(); err != nil {
		// Undo, so a failed Set changes nothing.
		if hadOld {
			s.set.put(key, old)
		} else {
			s.set.remove(key)
		}
		if wasDel {
			s.del[key] = delOld
		}
		return err
	}
	s.dirty = true
	return nil
}

// checkLimits checks the session this request would commit against the
// attribute and size limits. The commit checks again against the stored
// session of that moment.
func (s *Session) checkLimits() error {
	src := s.source()
	if src != nil {
		src.mu.Lock()
		defer src.mu.Unlock()
	}
	var base attrList
	var baseSize int
	if src != nil && !s.clear {
		base, baseSize = src.attrs, src.size
	}
	n, size := projected(base, baseSize, s.set, s.del)
	return s.m.checkSize(n, size)
}

// projected returns the attribute count and size of base (of size
// baseSize) after the changes.
func projected(base attrList, baseSize int, set attrList, del map[string]struct{}) (n, size int) {
	n, size = len(base), baseSize
	if len(del) > 0 { // (no iterator started on an empty map, on every write)
		for k := range del {
			if v, ok := base.get(k); ok {
				n--
				size -= len(k) + len(v)
			}
		}
	}
	for _, a := range set {
		if old, ok := base.get(a.Key); ok {
			size -= len(a.Key) + len(old)
		} else {
			n++
		}
		size += len(a.Key) + len(a.Value)
	}
	return n, size
}

func (m *Manager) checkSize(n, size int) error {
	lim := m.cfg.Limits
	if n > lim.MaxAttributes {
		return fmt.Errorf("%w: %d keys, limit %d", ErrTooManyAttributes, n, lim.MaxAttributes)
	}
	if size > lim.MaxSessionSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrSessionTooLarge, size, lim.MaxSessionSize)
	}
	return nil
}

func checkKey(key string) error {
	if key == "" || len(key) > maxKeyLen || key[0] == 0 {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	return nil
}

// Delete removes key.
func (s *Session) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(key)
}

func (s *Session) deleteLocked(key string) {
	s.set.remove(key)
	if !s.clear {
		if s.del == nil {
			s.del = make(map[string]struct{})
		}
		s.del[key] = struct{}{}
	}
	s.dirty = true
}

// Keys returns the session's keys, sorted, as this request sees them.
func (s *Session) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keysLocked(func(k string) bool { return k[0] != 0 })
}

func (s *Session) keysLocked(keep func(string) bool) []string {
	var keys []string
	if src := s.source(); src != nil && !s.clear {
		src.mu.Lock()
		for _, a := range src.attrs {
			k := a.Key
			if _, gone := s.del[k]; !gone && keep(k) {
				if _, dup := s.set.get(k); !dup {
					keys = append(keys, k)
				}
			}
		}
		src.mu.Unlock()
	}
	for _, a := range s.set {
		if keep(a.Key) {
			keys = append(keys, a.Key)
		}
	}
	slices.Sort(keys)
	return keys
}

// Clear removes every attribute. The session and its ID stay.
func (s *Session) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set, s.del = nil, nil
	s.clear = true
	s.dirty = true
}

// Invalidate ends the session (logout): its data is deleted from this node
// and its backup when the request commits, and the cookie is cleared. The
// handle then acts as a new, empty session; a value set afterwards starts a
// fresh session with a new ID.
func (s *Session) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec != nil {
		s.prev = s.rec
	}
	s.rec, s.carry = nil, false
	s.id = ""
	s.set, s.del, s.clear = nil, nil, false
	s.isNew = true
	s.dirty = true
	s.invalidated = true
}

// Regenerate gives the session a new ID and keeps its data (call it at
// login, against session fixation). The old ID stops working when the
// request commits, or Config.RegenerateGrace later for requests that
// still bring it (they get the new session, not its cookie).
func (s *Session) Regenerate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec != nil {
		s.prev, s.carry = s.rec, true
		s.rec = nil
	}
	s.id = newID()
	s.dirty = true
}

// AddFlash queues a one-time message, read back (and removed) by the next
// Flashes call, typically on the next page. Each flash is its own attribute,
// so flashes added by concurrent requests are all kept.
func (s *Session) AddFlash(msg string) error {
	b, err := JSONCodec{}.Marshal(msg)
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s%016x%08x", flashPrefix, s.m.cfg.Now().UnixNano(), s.m.flashSeq.Add(1))
	return s.setEncoded(key, b)
}

// Flashes returns the queued flash messages, oldest first, and removes them.
func (s *Session) Flashes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.keysLocked(func(k string) bool { return strings.HasPrefix(k, flashPrefix) })
	msgs := make([]string, 0, len(keys))
	for _, k := range keys {
		v, _ := s.value(k)
		var msg string
		if (JSONCodec{}).Unmarshal(v, &msg) == nil {
			msgs = append(msgs, msg)
		}
		s.deleteLocked(k)
	}
	return msgs
}

// merged returns a new list: base with the recorded changes applied.
func (s *Session) merged(base attrList) attrList {
	if s.clear {
		base = nil
	}
	attrs := make(attrList, 0, len(base)+len(s.set))
	for _, a := range base {
		if _, gone := s.del[a.Key]; !gone {
			attrs = append(attrs, a)
		}
	}
	for _, a := range s.set {
		attrs.put(a.Key, a.Value)
	}
	return slices.Clip(attrs)
}

// apply writes the recorded changes into rec, whose lock the caller holds,
// and returns them as sorted slices for the replicator.
func (s *Session) apply(rec *record) (set []Attr, del []string) {
	if s.clear {
		rec.attrs = make(attrList, 0, len(s.set))
	}
	if len(s.del) > 0 {
		for k := range s.del {
			if rec.attrs.remove(k) {
				del = append(del, k)
			}
		}
		slices.Sort(del)
	}
	for _, a := range s.set {
		rec.attrs.put(a.Key, a.Value)
	}
	// s.set is sorted already, and the commit forgets it (reset): the
	// Change may keep it.
	return s.set, del
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns) }
