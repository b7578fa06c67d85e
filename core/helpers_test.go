package core

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

var testKey = KeyPair{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newManager returns a manager with the test key and a fake clock; edit
// adjusts the config first.
func newManager(t testing.TB, edit func(*Config)) (*Manager, *clock) {
	t.Helper()
	clk := newClock()
	cfg := Config{Keys: []KeyPair{testKey}, Now: clk.Now, SweepInterval: time.Hour}
	if edit != nil {
		edit(&cfg)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, clk
}

// client drives a handler through the manager's middleware, keeping the
// session cookie like a browser.
type client struct {
	t      testing.TB
	h      http.Handler
	name   string
	cookie string // value; "" for none
}

func newClient(t testing.TB, m *Manager, h http.HandlerFunc) *client {
	return &client{t: t, h: m.Middleware(h), name: m.cfg.Cookie.Name}
}

// do runs one request and returns the recorder.
func (c *client) do(path string) *httptest.ResponseRecorder {
	c.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://example.test"+path, nil)
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: c.name, Value: c.cookie})
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.Name != c.name {
			continue
		}
		if ck.MaxAge < 0 {
			c.cookie = ""
		} else {
			c.cookie = ck.Value
		}
	}
	return rec
}

// setCookie returns the response's session cookie, if any.
func setCookie(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}
