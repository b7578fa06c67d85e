package core

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Manager loads and commits sessions. Create it with NewManager and stop it
// with Close.
type Manager struct {
	cfg     Config
	cookies *cookieCodec
	store   *store
	log     *slog.Logger

	repl    Replicator
	toucher Toucher
	locator Locator
	fetcher Fetcher
	dir     UserDirectory
	users   userIndex
	renames renames

	flashSeq atomic.Uint64
	draining atomic.Bool
	stats    counters

	flightMu sync.Mutex
	flights  map[string]*flight // sessions being fetched from the cluster

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewManager validates cfg, fills in its defaults, and starts the expiry
// sweeper. The error wraps ErrInvalidConfig and names the bad field.
func NewManager(cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:     cfg,
		cookies: newCookieCodec(cfg.Cookie.Name, cfg.Keys, cfg.Lifetime, cfg.Now),
		store:   newStore(int64(cfg.IdleTimeout), int64(cfg.FirstVisitIdleTimeout), int64(cfg.Lifetime), int64(cfg.SweepInterval), cfg.Limits.MaxSessions),
		log:     cfg.Logger,
		repl:    cfg.Replicator,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		flights: make(map[string]*flight),
	}
	if m.repl != nil {
		m.toucher, _ = m.repl.(Toucher)
		m.locator, _ = m.repl.(Locator)
		m.fetcher, _ = m.repl.(Fetcher)
		m.dir, _ = m.repl.(UserDirectory)
		if b, ok := m.repl.(Binder); ok {
			b.Bind(m)
		}
	}
	go m.sweeper()
	return m, nil
}

// Close stops the expiry sweeper. Sessions stay readable; Close is for
// shutting down and for tests.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.done
	})
	return nil
}

func (m *Manager) sweeper() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep removes the sessions that have expired by the configured clock and
// tells the replicator. The sweeper calls it every SweepInterval; tests with
// an injected clock call it directly. It returns how many expired.
func (m *Manager) Sweep() int {
	now := m.now()
	expired := m.store.sweep(now)
	var evs []pendingEvent
	for _, r := range expired {
		if m.wants(evExpired) {
			reason := ReasonIdle
			if r.created+int64(m.cfg.Lifetime) <= now {
				reason = ReasonLifetime
			}
			r.mu.Lock()
			m.recordEvent(&evs, evExpired, r, reason, now)
			r.mu.Unlock()
		}
		m.unindex(r.id)
		if m.repl != nil {
			// Epoch 0: it expired, so every copy of it expires too; it did
			// not end (see Change.Epoch).
			m.repl.Replicate(&Change{ID: r.id, Base: r.version, Version: r.version + 1, Removed: true})
		}
	}
	if len(expired) > 0 {
		m.log.Debug("tandem: sessions expired", "count", len(expired))
	}
	m.fire(context.Background(), evs)
	return len(expired)
}

// Len returns the number of sessions this node holds.
func (m *Manager) Len() int { return int(m.store.count.Load()) }

func (m *Manager) now() int64 { return m.cfg.Now().UnixNano() }

// DefaultErrorHandler answers a failed commit with a plain-text status
// page: 503 Service Unavailable for the errors after which the same request
// can succeed later or on another node (with Retry-After: 1 for those whose
// cause passes within moments), 500 Internal Server Error for the others.
// Which error gets which status: the README's table "Errors and status
// codes", the one list of them.
func DefaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrSessionMoved) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDraining):
		w.Header().Set("Retry-After", "1")
		code = http.StatusServiceUnavailable
	case errors.Is(err, ErrNodeFull) || errors.Is(err, ErrReplication):
		code = http.StatusServiceUnavailable
	}
	http.Error(w, http.StatusText(code), code)
}

// HandleError writes the configured error response for err.
func (m *Manager) HandleError(w http.ResponseWriter, r *http.Request, err error) {
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	m.cfg.ErrorHandler(w, r, err)
}

// Load returns the request's session: the stored one its cookie names (here
// or, in a cluster, fetched from the node that holds it), or a new, empty
// one when the cookie is missing, tampered, foreign or expired, or names a
// session that no longer exists. When the session exists elsewhere but
// could not be brought here in time, the returned session's Err reports
// ErrUnavailable: the adapter answers with HandleError (503) instead of
// running the handler, rather than give the user a fresh session. Adapters
// call Load once per request and Release (through Done or Finish) at its
// end; use Middleware or an adapter rather than calling it yourself.
func (m *Manager) Load(r *http.Request) *Session {
	s := &Session{m: m}
	v, ok := cookieValue(r, m.cfg.Cookie.Name)
	if !ok {
		s.isNew = true
		return s
	}
	p, stale, err := m.cookies.decode(v)
	if err != nil {
		m.stats.cookiesRejected.Add(1)
		m.log.Debug("tandem: cookie rejected, starting a new session", "err", err)
		s.isNew = true
		return s
	}
	s.route = Route{Owner: p.owner, Backup: p.backup, Epoch: p.epoch, Unsaved: p.unsaved, Proof: v}
	rec, err := m.lookup(r.Context(), p.id, s.route)
	if err != nil {
		s.err = err
		s.isNew = true
		return s
	}
	if rec == nil {
		s.isNew = true
		if p.unsaved && (p.owner == m.location().Owner || p.owner == "") {
			// An anonymous client's cookie from this node: keep its ID, so
			// it gets no new cookie on every request.
			s.id, s.cookieID, s.staleCookie = p.id, p.id, stale
		}
		return s
	}
	// rec.id is not p.id when the cookie's ID was regenerated within
	// RegenerateGrace: the request gets the new session and its cookie.
	s.id, s.rec, s.held, s.cookieID, s.staleCookie = rec.id, rec, rec, p.id, stale || p.unsaved
	s.graced = rec.id != p.id
	return s
}

// Drain makes the node refuse to create sessions (ErrDraining, 503): call it
// when the node is about to stop. Existing sessions are still served.
func (m *Manager) Drain() { m.draining.Store(true) }

// Install stores a full copy of a session taken over from another node and
// makes this node its owner, under the copy's Epoch. A copy older than the
// one held (by epoch, then version) is ignored; one that breaks Limits is
// refused with their error.
// The cluster (package buddy) calls it; applications do not.
//
// When c.Origin names a reason, the takeover is reported to
// Events.OnTakenOver (on the caller's goroutine, once Install stored the
// copy).
func (m *Manager) Install(c *Change) error {
	_, err := m.installReport(context.Background(), c)
	return err
}

// installReport installs c and reports the takeover and any eviction it
// caused to the hooks.
func (m *Manager) installReport(ctx context.Context, c *Change) (*record, error) {
	var evs []pendingEvent
	rec, err := m.install(c, &evs)
	m.fire(ctx, evs)
	return rec, err
}

// install stores c; the events it causes are appended to evs.
func (m *Manager) install(c *Change, evs *[]pendingEvent) (*record, error) {
	if !c.Full || !validID(c.ID) {
		return nil, fmt.Errorf("tandem: install %q: not a full copy of a valid session", c.ID)
	}
	// A copy from another node meets this node's limits like a commit.
	size := 0
	for _, a := range c.Set {
		if len(a.Value) > m.cfg.Limits.MaxValueSize {
			return nil, fmt.Errorf("tandem: install %s: %w: %q is %d bytes, limit %d", c.ID, ErrValueTooLarge, a.Key, len(a.Value), m.cfg.Limits.MaxValueSize)
		}
		size += len(a.Key) + len(a.Value)
	}
	if err := m.checkSize(len(c.Set), size); err != nil {
		return nil, fmt.Errorf("tandem: install %s: %w", c.ID, err)
	}
	mu := m.store.installLock(c.ID)
	mu.Lock()
	defer mu.Unlock()
	now := m.now()
	if old, ok := m.store.get(c.ID, now); ok {
		old.mu.Lock()
		if !old.dead && !old.stamp().Less(Stamp{Epoch: c.Epoch, Version: c.Version}) {
			old.mu.Unlock()
			return old, nil
		}
		// Requests still holding the older copy fail their commit with
		// ErrSessionMoved instead of dropping their changes unseen.
		old.dead, old.moved = true, true
		old.mu.Unlock()
		m.store.remove(old)
		m.unindex(old.id)
	}
	if !m.reserve(evs) {
		return nil, ErrNodeFull
	}
	rec := &record{id: c.ID, attrs: attrListOf(c.Set), version: c.Version, epoch: max(c.Epoch, 1), created: c.Created.UnixNano()}
	rec.size = rec.attrs.size()
	rec.accessed.Store(c.Accessed.UnixNano())
	rec.returned.Store(true) // in use on another node: not a first visit
	m.store.insert(rec)
	rec.mu.Lock()
	m.indexRecord(rec)
	rec.mu.Unlock()
	if c.Origin.Reason != "" && m.wants(evTakenOver) {
		e := m.event(rec, c.Origin.Reason, now)
		e.From = c.Origin.From
		*evs = append(*evs, pendingEvent{evTakenOver, e})
	}
	return rec, nil
}

// reserve claims room for one more session, evicting a first-visit
// session when the node is full (counted in Stats().Evicted; its copy on
// the buddy is dropped like an expired one's).
func (m *Manager) reserve(evs *[]pendingEvent) bool {
	ok, evicted := m.store.reserve()
	if evicted != nil {
		m.stats.evicted.Add(1)
		evicted.mu.Lock()
		m.recordEvent(evs, evExpired, evicted, ReasonEvicted, m.now())
		evicted.mu.Unlock()
		m.unindex(evicted.id)
		if m.repl != nil {
			m.repl.Replicate(&Change{ID: evicted.id, Base: evicted.version, Version: evicted.version + 1, Removed: true})
		}
	}
	return ok
}

// Snapshot returns a full copy of a session this node holds, as a Change
// with Full set, or false when it holds none.
func (m *Manager) Snapshot(id string) (*Change, bool) {
	rec, ok := m.store.get(id, m.now())
	if !ok {
		return nil, false
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.dead {
		return nil, false
	}
	return rec.fullChange(""), true
}

// Snapshots calls fn with a full copy of every session this node holds,
// until fn returns false. Sessions changed meanwhile may be seen at either
// version; their later changes are replicated as usual.
func (m *Manager) Snapshots(fn func(*Change) bool) {
	for _, rec := range m.store.records() {
		rec.mu.Lock()
		var c *Change
		if !rec.dead {
			c = rec.fullChange("")
		}
		rec.mu.Unlock()
		if c != nil && !fn(c) {
			return
		}
	}
}

func (r *record) fullChange(prevID string) *Change {
	return &Change{
		ID: r.id, PrevID: prevID, Version: r.version, Epoch: r.epoch, Full: true,
		Set:     slices.Clone(r.attrs),
		Created: unixTime(r.created), Accessed: unixTime(r.accessed.Load()),
	}
}

// location returns the owner and backup to write into a cookie.
func (m *Manager) location() Route {
	if m.locator == nil {
		return Route{}
	}
	o, b := m.locator.Location()
	return Route{Owner: o, Backup: b}
}

// Timeouts returns the configured idle timeout and absolute lifetime. A
// replicator uses them to expire backup copies.
func (m *Manager) Timeouts() (idle, lifetime time.Duration) {
	return m.cfg.IdleTimeout, m.cfg.Lifetime
}

// IDs calls fn with the ID of every session this node holds, until fn
// returns false.
func (m *Manager) IDs(fn func(id string) bool) {
	for _, rec := range m.store.records() {
		if !fn(rec.id) {
			return
		}
	}
}

// Fingerprint returns what the nodes of a cluster compare to spot a
// misconfigured peer: a hash of the settings every node must share (the
// cookie name, the idle timeout and the lifetime) and a fingerprint of
// each cookie key pair, the signing pair first. Neither reveals a key.
func (m *Manager) Fingerprint() (settings uint64, keys []uint64) {
	h := sha256.New()
	fmt.Fprintf(h, "tandem settings 1\x00%s\x00%d\x00%d", m.cfg.Cookie.Name, m.cfg.IdleTimeout, m.cfg.Lifetime)
	settings = binary.BigEndian.Uint64(h.Sum(nil))
	for _, k := range m.cfg.Keys {
		h.Reset()
		fmt.Fprintf(h, "tandem cookie key 1\x00%x\x00%x", k.Hash, k.Block)
		keys = append(keys, binary.BigEndian.Uint64(h.Sum(nil)))
	}
	return settings, keys
}

// Proves reports whether proof, a session cookie's value, is a valid
// cookie of session id: a node hands a session over only to a peer that
// shows one (Route.Proof). The cluster (package buddy) calls it.
func (m *Manager) Proves(id, proof string) bool {
	p, _, err := m.cookies.decode(proof)
	if err != nil {
		return false
	}
	// A cookie of the ID a session had before Regenerate proves the
	// session within RegenerateGrace.
	return p.id == id || m.successorID(p.id, m.now()) == id
}
