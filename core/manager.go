package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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

	flashSeq atomic.Uint64
	draining atomic.Bool

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
		store:   newStore(int64(cfg.IdleTimeout), int64(cfg.Lifetime), int64(cfg.SweepInterval), cfg.Limits.MaxSessions),
		log:     cfg.Logger,
		repl:    cfg.Replicator,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if m.repl != nil {
		m.toucher, _ = m.repl.(Toucher)
		m.locator, _ = m.repl.(Locator)
		m.fetcher, _ = m.repl.(Fetcher)
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
	expired := m.store.sweep(m.now())
	for _, r := range expired {
		if m.repl != nil {
			m.repl.Replicate(&Change{ID: r.id, Base: r.version, Version: r.version + 1, Removed: true})
		}
	}
	if len(expired) > 0 {
		m.log.Debug("tandem: sessions expired", "count", len(expired))
	}
	return len(expired)
}

// Len returns the number of sessions this node holds.
func (m *Manager) Len() int { return int(m.store.count.Load()) }

func (m *Manager) now() int64 { return m.cfg.Now().UnixNano() }

// DefaultErrorHandler answers a failed commit with a plain-text status
// page: 503 Service Unavailable for the errors after which the same request
// can succeed later or on another node, 500 Internal Server Error for the
// others. Which error gets which status: the README's table "Errors and
// status codes", the one list of them.
func DefaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrNodeFull) || errors.Is(err, ErrReplication) ||
		errors.Is(err, ErrSessionMoved) || errors.Is(err, ErrDraining) {
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

// Load returns the request's session: the stored one its cookie names, or a
// new, empty one. It never fails: a missing, tampered, foreign or expired
// cookie yields a new session. Adapters call it once per request; use
// Middleware or an adapter rather than calling it yourself.
func (m *Manager) Load(r *http.Request) *Session {
	s := &Session{m: m}
	v, ok := cookieValue(r, m.cfg.Cookie.Name)
	if !ok {
		s.isNew = true
		return s
	}
	p, stale, err := m.cookies.decode(v)
	if err != nil {
		m.log.Debug("tandem: cookie rejected, starting a new session", "err", err)
		s.isNew = true
		return s
	}
	s.route = Route{Owner: p.owner, Backup: p.backup, Unsaved: p.unsaved}
	now := m.now()
	rec, ok := m.store.get(p.id, now)
	var self string
	if m.locator != nil {
		self = m.location().Owner
	}
	if m.fetcher != nil && (!ok || p.owner != "" && p.owner != self) && !(p.unsaved && p.owner == self) {
		// Not here, or the cookie names another owner: a newer copy may
		// live elsewhere.
		var local uint64
		if ok {
			local = rec.currentVersion()
		}
		if fetched, fok := m.fetch(r.Context(), p.id, s.route, local, now); fok {
			rec, ok = fetched, true
		}
	}
	if !ok {
		s.isNew = true
		if p.unsaved && (p.owner == self || p.owner == "") {
			// An anonymous client's cookie from this node: keep its ID, so
			// it gets no new cookie on every request.
			s.id, s.cookieID, s.staleCookie = p.id, p.id, stale
		}
		return s
	}
	s.id, s.rec, s.cookieID, s.staleCookie = p.id, rec, p.id, stale || p.unsaved
	return s
}

// fetch brings a session from the cluster, installs it and replicates it in
// full to this node's backup.
func (m *Manager) fetch(ctx context.Context, id string, route Route, local uint64, now int64) (*record, bool) {
	c, ok, err := m.fetcher.Fetch(ctx, id, route, local)
	if err != nil {
		m.log.Warn("tandem: session fetch failed, starting a new session", "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	rec, err := m.install(c)
	if err != nil {
		m.log.Warn("tandem: fetched session not installed", "err", err)
		return nil, false
	}
	if rec.deadline(m.store.idle, m.store.life) <= now {
		return nil, false
	}
	if m.repl != nil {
		rec.mu.Lock()
		ack := m.repl.Replicate(rec.fullChange(""))
		rec.mu.Unlock()
		if ack != nil {
			if err := ack.Wait(ctx); err != nil {
				m.log.Warn("tandem: fetched session not replicated", "err", err)
			}
		}
	}
	return rec, true
}

// Surrender gives up a session this node holds because another node takes
// it over: it returns a full copy and removes the session here. A request
// still running on it here fails its commit with ErrSessionMoved. The
// cluster (package buddy) calls it; applications do not.
func (m *Manager) Surrender(id string) (*Change, bool) {
	rec, ok := m.store.get(id, m.now())
	if !ok {
		return nil, false
	}
	rec.mu.Lock()
	if rec.dead {
		rec.mu.Unlock()
		return nil, false
	}
	c := rec.fullChange("")
	rec.dead, rec.moved = true, true
	rec.mu.Unlock()
	m.store.remove(rec)
	return c, true
}

// Drain makes the node refuse to create sessions (ErrDraining): call it
// when the node is about to stop. Existing sessions are still served.
func (m *Manager) Drain() { m.draining.Store(true) }

// Install stores a full copy of a session fetched from another node and
// makes this node its owner. A copy older than the one held is ignored.
// The cluster (package buddy) calls it; applications do not.
func (m *Manager) Install(c *Change) error {
	_, err := m.install(c)
	return err
}

func (m *Manager) install(c *Change) (*record, error) {
	if !c.Full || !validID(c.ID) {
		return nil, fmt.Errorf("tandem: install %q: not a full copy of a valid session", c.ID)
	}
	now := m.now()
	if old, ok := m.store.get(c.ID, now); ok {
		old.mu.Lock()
		newer := old.version >= c.Version
		old.mu.Unlock()
		if newer {
			return old, nil
		}
		old.mu.Lock()
		old.dead = true
		old.mu.Unlock()
		m.store.remove(old)
	}
	if !m.store.reserve() {
		return nil, ErrNodeFull
	}
	rec := &record{id: c.ID, attrs: make(map[string][]byte, len(c.Set)), version: c.Version, created: c.Created.UnixNano()}
	for _, a := range c.Set {
		rec.attrs[a.Key] = a.Value
	}
	rec.size = sizeOf(rec.attrs)
	rec.accessed.Store(c.Accessed.UnixNano())
	m.store.insert(rec)
	return rec, nil
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
		ID: r.id, PrevID: prevID, Version: r.version, Full: true,
		Set:     sortedAttrs(r.attrs),
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
