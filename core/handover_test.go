package core

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFetcher is a replicator that names this node n1 and answers Fetch
// with fetch (called at most once at a time per session by the manager).
type fakeFetcher struct {
	fakeReplicator
	calls atomic.Int32
	fetch func(id string, route Route, local Stamp) (*Change, error)
}

func (f *fakeFetcher) Fetch(_ context.Context, id string, route Route, local Stamp) (*Change, error) {
	f.calls.Add(1)
	return f.fetch(id, route, local)
}

// foreignCookie returns a cookie for a session of one attribute that node
// n0 issued under epoch, and the session's full copy.
func foreignCookie(t *testing.T, epoch uint64) (string, *Change) {
	t.Helper()
	m0, _ := newManager(t, func(c *Config) { c.Replicator = &fakeReplicator{loc: Route{Owner: "n0", Backup: "n1"}} })
	id := newID()
	c := &Change{ID: id, Version: 3, Epoch: epoch, Full: true, Set: []Attr{{Key: "k", Value: []byte(`"v"`)}},
		Created: m0.cfg.Now(), Accessed: m0.cfg.Now()}
	v, err := m0.cookies.encode(payload{id: id, owner: "n0", backup: "n1", epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return v, c
}

// request runs one request with cookie through h and returns the recorder.
func request(h http.Handler, cookie string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "http://example.test/", nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: defaultCookieName, Value: cookie})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A handover waits for the request holding the session: its write travels
// with the session instead of failing.
func TestSurrenderWaitsForHolders(t *testing.T) {
	m, _ := newManager(t, nil)
	entered, release := make(chan string), make(chan struct{})
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/hold" {
			entered <- s.ID()
			<-release
		}
		_ = s.Set("k", r.URL.Path)
	})
	c.do("/init")
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- c.do("/hold") }()
	id := <-entered
	got := make(chan *Change)
	go func() {
		ch, held := m.Surrender(t.Context(), id)
		if !held {
			t.Error("session not held")
		}
		got <- ch
	}()
	rec, _ := m.store.get(id, m.now())
	waitUntil(t, "handover waits", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.leaving != nil })
	close(release)
	if r := <-done; r.Code != http.StatusOK {
		t.Fatalf("holding request answered %d", r.Code)
	}
	ch := <-got
	if ch == nil || len(ch.Set) != 1 || string(ch.Set[0].Value) != `"/hold"` {
		t.Fatalf("surrendered %+v, want the holder's write", ch)
	}
	if _, ok := m.Snapshot(id); ok {
		t.Fatal("the session is still here")
	}
}

// A request arriving during a handover waits for it, then no longer finds
// the session here (it would fetch it from its new owner).
func TestLoadWaitsForHandover(t *testing.T) {
	m, _ := newManager(t, nil)
	var phase atomic.Int32 // 2: the holder's handler is done
	entered, release := make(chan string), make(chan struct{})
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/hold":
			entered <- s.ID()
			<-release
			phase.Store(2)
		case "/late":
			if phase.Load() != 2 {
				t.Error("a request ran during the handover")
			}
			if !s.IsNew() {
				t.Error("the late request was served the surrendered session")
			}
		}
		_ = s.Set("k", r.URL.Path)
	})
	c.do("/init")
	cookie := c.cookie
	done := make(chan struct{})
	go func() { c.do("/hold"); close(done) }()
	id := <-entered
	surrendered := make(chan struct{})
	go func() {
		m.Surrender(t.Context(), id)
		close(surrendered)
	}()
	rec, _ := m.store.get(id, m.now())
	waitUntil(t, "handover waits", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.leaving != nil })
	late := make(chan struct{})
	waiting := &watchedContext{Context: context.Background(), asked: make(chan struct{})}
	go func() {
		req := httptest.NewRequestWithContext(waiting, http.MethodGet, "http://example.test/late", nil)
		req.AddCookie(&http.Cookie{Name: defaultCookieName, Value: cookie})
		c.h.ServeHTTP(httptest.NewRecorder(), req)
		close(late)
	}()
	<-waiting.asked // the late request blocks on the handover
	close(release)
	<-done
	<-surrendered
	<-late
}

// Requests that need one session from the cluster share one fetch.
func TestFetchSingleFlight(t *testing.T) {
	cookie, copy0 := foreignCookie(t, 1)
	gate := make(chan struct{})
	f := &fakeFetcher{fakeReplicator: fakeReplicator{loc: Route{Owner: "n1", Backup: "n2"}}}
	f.fetch = func(id string, route Route, local Stamp) (*Change, error) {
		<-gate
		c := *copy0
		c.Epoch++
		return &c, nil
	}
	m, _ := newManager(t, func(c *Config) { c.Replicator = f })
	var seen sync.Map
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		v, _, _ := Get[string](s, "k")
		seen.Store(r.Header.Get("X-N"), v)
	}))
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodGet, "http://example.test/", nil)
			req.Header.Set("X-N", string(rune('a'+i)))
			req.AddCookie(&http.Cookie{Name: defaultCookieName, Value: cookie})
			h.ServeHTTP(httptest.NewRecorder(), req)
		})
	}
	waitUntil(t, "one fetch in flight", func() bool { return f.calls.Load() == 1 })
	waitUntil(t, "the others wait for it", func() bool {
		m.flightMu.Lock()
		defer m.flightMu.Unlock()
		fl := m.flights[copy0.ID]
		return fl != nil && fl.waiters == 4
	})
	close(gate)
	wg.Wait()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	for i := range 5 {
		if v, _ := seen.Load(string(rune('a' + i))); v != "v" {
			t.Fatalf("request %d read %v", i, v)
		}
	}
	if st, ok := m.Owned(copy0.ID); !ok || st.Epoch != 2 {
		t.Fatalf("owned %+v %v, want epoch 2", st, ok)
	}
	rec, _ := m.store.get(copy0.ID, m.now())
	if rec.users != 0 {
		t.Fatalf("%d users left after the requests ended", rec.users)
	}
}

// When the cluster cannot tell in time, the request is refused with a
// retryable 503 and its handler never runs: no fresh session.
func TestUnavailableIsRetryable503(t *testing.T) {
	cookie, _ := foreignCookie(t, 1)
	f := &fakeFetcher{fakeReplicator: fakeReplicator{loc: Route{Owner: "n1"}}}
	f.fetch = func(string, Route, Stamp) (*Change, error) { return nil, errors.New("n0 does not answer") }
	m, _ := newManager(t, func(c *Config) { c.Replicator = f })
	h := m.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran") }))
	rec := request(h, cookie)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("answered %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if setCookie(rec, defaultCookieName) != nil {
		t.Fatal("the cookie was replaced")
	}
	if st := m.Stats(); st.Unavailable != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A session no node holds any more is a fresh one, counted.
func TestGoneIsFresh(t *testing.T) {
	cookie, _ := foreignCookie(t, 1)
	f := &fakeFetcher{fakeReplicator: fakeReplicator{loc: Route{Owner: "n1"}}}
	f.fetch = func(string, Route, Stamp) (*Change, error) { return nil, nil }
	m, _ := newManager(t, func(c *Config) { c.Replicator = f })
	var isNew bool
	h := m.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { isNew = FromContext(r.Context()).IsNew() }))
	if rec := request(h, cookie); rec.Code != http.StatusOK || !isNew {
		t.Fatalf("answered %d, new %v", rec.Code, isNew)
	}
	if st := m.Stats(); st.Gone != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The cookie's epoch tells whether the copy held here can be served: not
// when the cookie was issued by an owner under a newer epoch.
func TestCookieEpochDecidesFetch(t *testing.T) {
	cookie1, c := foreignCookie(t, 1)
	// The same session under a cookie of a newer epoch.
	m0, _ := newManager(t, nil)
	cookie3, _ := m0.cookies.encode(payload{id: c.ID, owner: "n0", backup: "n1", epoch: 3})
	f := &fakeFetcher{fakeReplicator: fakeReplicator{loc: Route{Owner: "n1"}}}
	f.fetch = func(string, Route, Stamp) (*Change, error) { return nil, errors.New("n0 does not answer") }
	m, _ := newManager(t, func(cfg *Config) { cfg.Replicator = f })
	held := *c
	held.Epoch = 2
	if err := m.Install(&held); err != nil {
		t.Fatal(err)
	}
	h := m.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if rec := request(h, cookie1); rec.Code != http.StatusOK || f.calls.Load() != 0 {
		t.Fatalf("older cookie: %d after %d fetches, want 200 without one", rec.Code, f.calls.Load())
	}
	if rec := request(h, cookie3); rec.Code != http.StatusServiceUnavailable || f.calls.Load() != 1 {
		t.Fatalf("newer cookie: %d after %d fetches, want 503 after one (the copy here is stale)", rec.Code, f.calls.Load())
	}
}

// Fence ends this node's ownership: a request holding the session fails
// its commit with 503.
func TestFenceFailsCommit(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/fenced" && !m.Fence(s.ID(), 2) {
			t.Error("not fenced")
		}
		_ = s.Set("k", r.URL.Path)
	})
	c.do("/init")
	if rec := c.do("/fenced"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("answered %d, want 503", rec.Code)
	}
}

// Install keeps the newest copy by epoch, then version; requests holding a
// replaced copy fail their commit instead of dropping their changes.
func TestInstallStampOrder(t *testing.T) {
	m, _ := newManager(t, nil)
	id := newID()
	install := func(epoch, version uint64, val string) {
		t.Helper()
		err := m.Install(&Change{ID: id, Epoch: epoch, Version: version, Full: true, Set: []Attr{{Key: "k", Value: []byte(val)}},
			Created: m.cfg.Now(), Accessed: m.cfg.Now()})
		if err != nil {
			t.Fatal(err)
		}
	}
	value := func() string {
		c, _ := m.Snapshot(id)
		return string(c.Set[0].Value)
	}
	install(2, 5, `"a"`)
	install(1, 9, `"b"`)
	if v := value(); v != `"a"` {
		t.Fatalf("an older epoch replaced the copy: %s", v)
	}
	install(3, 1, `"c"`)
	if v := value(); v != `"c"` {
		t.Fatalf("a newer epoch did not replace the copy: %s", v)
	}
}

// Cookies written before epochs existed (version 1) still load.
func TestCookieVersion1Decodes(t *testing.T) {
	m, _ := newManager(t, nil)
	id := newID()
	b := []byte{1}
	for _, s := range []string{id, "n0", "n1"} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, 0)
	v, err := m.cookies.codecs[0].Encode(m.cfg.Cookie.Name, b)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := m.cookies.decode(v)
	if err != nil || p.id != id || p.owner != "n0" || p.backup != "n1" || p.epoch != 0 {
		t.Fatalf("decoded %+v, %v", p, err)
	}
}

// watchedContext closes asked the first time someone waits on it.
type watchedContext struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (c *watchedContext) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 5000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("timed out: %s", what)
}

// A copy from another node (a failover fetch, a drain's promotion) meets
// this node's Limits like a commit: a cluster-key holder cannot plant a
// session larger than the node would store.
func TestInstallAppliesLimits(t *testing.T) {
	m, clk := newManager(t, func(c *Config) {
		c.Limits = Limits{MaxAttributes: 2, MaxValueSize: 8, MaxSessionSize: 16}
	})
	copyOf := func(attrs ...Attr) *Change {
		return &Change{ID: newID(), Epoch: 1, Version: 1, Full: true, Set: attrs, Created: clk.Now(), Accessed: clk.Now()}
	}
	for _, tc := range []struct {
		name string
		c    *Change
		want error
	}{
		{"value", copyOf(Attr{Key: "k", Value: []byte(`"123456789"`)}), ErrValueTooLarge},
		{"attributes", copyOf(Attr{Key: "a", Value: []byte("1")}, Attr{Key: "b", Value: []byte("2")}, Attr{Key: "c", Value: []byte("3")}), ErrTooManyAttributes},
		{"session", copyOf(Attr{Key: "aaaaaa", Value: []byte(`"12345"`)}, Attr{Key: "bbbbbb", Value: []byte(`"12345"`)}), ErrSessionTooLarge},
	} {
		if err := m.Install(tc.c); !errors.Is(err, tc.want) {
			t.Errorf("%s beyond the limit: Install = %v, want %v", tc.name, err, tc.want)
		}
		if _, owned := m.Owned(tc.c.ID); owned {
			t.Errorf("%s beyond the limit: the copy was stored", tc.name)
		}
	}
	ok := copyOf(Attr{Key: "k", Value: []byte(`"1234"`)})
	if err := m.Install(ok); err != nil {
		t.Fatalf("a copy within the limits: %v", err)
	}
	if _, owned := m.Owned(ok.ID); !owned {
		t.Fatal("a copy within the limits was not stored")
	}
}

// A rename a copy brings lasts until the window's end it names, never
// beyond this node's own RegenerateGrace from now; a copy without an end
// counts only when the request brought the old ID.
func TestAdoptRenameBoundsTheWindow(t *testing.T) {
	m, clk := newManager(t, func(c *Config) { c.RegenerateGrace = 10 * time.Second })
	now := clk.Now().UnixNano()
	grace := int64(10 * time.Second)
	for _, tc := range []struct {
		name  string
		until time.Time
		asked string
		want  int64 // 0: no rename
	}{
		{"the window's end", clk.Now().Add(3 * time.Second), "new1", now + int64(3*time.Second)},
		{"an end beyond the grace", clk.Now().Add(time.Hour), "new2", now + grace},
		{"an end already past", clk.Now().Add(-time.Second), "new3", 0},
		{"no end, the old ID asked", time.Time{}, "old4", now + grace},
		{"no end, the new ID asked", time.Time{}, "new5", 0},
	} {
		n := tc.asked[len(tc.asked)-1:] // each case its own pair of IDs
		newID, oldID := "new"+n, "old"+n
		m.adoptRename(&Change{ID: newID, PrevID: oldID, PrevUntil: tc.until}, tc.asked, now)
		if got := m.renames.until(oldID, now); got != tc.want {
			t.Errorf("%s: the old ID leads to the session until %d, want %d", tc.name, got-now, tc.want-now)
		}
	}
}

// Two installs of one session at once (a drain's promotion and a fetch of
// the same session on the node that takes it) leave one live record: each
// install hands back the record stored, or one that is marked dead so that
// a request holding it fails its commit. Before, both stored theirs, and a
// request committed into the record the other had replaced: its write was
// lost (the history checker's fork in rolling-restart).
func TestConcurrentInstallsKeepOneRecord(t *testing.T) {
	m, clk := newManager(t, nil)
	for range 300 {
		id := newID()
		var wg sync.WaitGroup
		recs := make([]*record, 8)
		for i := range recs {
			wg.Go(func() {
				c := &Change{ID: id, Epoch: 2, Version: 12, Full: true, Set: []Attr{{Key: "k", Value: []byte(`"v"`)}},
					Created: clk.Now(), Accessed: clk.Now()}
				rec, err := m.installReport(t.Context(), c)
				if err != nil {
					t.Error(err)
				}
				recs[i] = rec
			})
		}
		wg.Wait()
		stored, ok := m.store.get(id, clk.Now().UnixNano())
		if !ok {
			t.Fatal("no record stored")
		}
		for _, r := range recs {
			r.mu.Lock()
			dead := r.dead
			r.mu.Unlock()
			if r != stored && !dead {
				t.Fatalf("an install handed back a live record that is not the one stored")
			}
		}
	}
}
