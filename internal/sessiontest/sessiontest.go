// Package sessiontest is the conformance suite of Tandem's front ends: one
// table of behaviours that core.Manager.Middleware, the Gin adapter and the
// Echo v4 and v5 adapters must all show (commit before the header, late
// writes, Flush, Hijack, http.NewResponseController, redirects, errors,
// panics, Regenerate, Invalidate, flashes, lazy cookies, limits,
// concurrent requests).
//
// A front end plugs in through Frontend: it builds an http.Handler from a
// table of Routes whose handlers are written against Ctx, a neutral view of
// the framework's request context. Each front end's package runs the suite
// from its tests:
//
//	func TestConformance(t *testing.T) { sessiontest.Run(t, frontend{}) }
//
// The package also holds the helpers those tests share (a manager with
// random keys, a browser-like client).
package sessiontest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/tandemsession/tandem/core"
)

// Frontend is one way of serving Tandem sessions.
type Frontend interface {
	// Handler returns an http.Handler that serves routes behind m's
	// session middleware. A recovery middleware registered before the
	// session middleware must answer a panic with 500 (the framework's
	// own, where it has one). A route's handler reads the session with
	// the front end's accessor (ginsession.Get, echosession.Get,
	// core.FromContext); an error it returns is answered the framework's
	// way, with the status StatusOf gives.
	Handler(m *core.Manager, routes []Route) http.Handler
}

// Skipper is implemented by a Frontend that cannot show some behaviours of
// the suite (a configuration that hides the writer's capabilities): Skip
// returns why case name (a Case's Name, or Name/subcase) does not apply, or
// "".
type Skipper interface {
	Skip(name string) string
}

// Route is one route of a test app.
type Route struct {
	Method string // GET, POST, ...
	Path   string // an exact path, no parameters
	// Handle serves the route; its error is answered the framework's
	// way, with the status StatusOf gives.
	Handle func(Ctx) error
}

// Ctx is the framework's request context as a route's handler sees it.
type Ctx interface {
	// Request returns the request (its context carries the session).
	Request() *http.Request
	// Session returns the request's session through the front end's
	// accessor.
	Session() *core.Session
	// Writer returns the writer the framework's handlers write to (gin's
	// c.Writer, Echo's c.Response(), net/http's w).
	Writer() http.ResponseWriter
	// String answers code with a text body, the framework's way.
	String(code int, body string) error
	// Redirect answers a redirect to url, the framework's way.
	Redirect(code int, url string) error
	// NoContent answers code with no body, the framework's way (gin:
	// AbortWithStatus).
	NoContent(code int) error
}

// StatusError is an error a handler returns to be answered with Code.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string { return fmt.Sprintf("status %d", e.Code) }

// StatusOf returns the status a front end answers a handler's error with:
// a StatusError's Code, else 500.
func StatusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return http.StatusInternalServerError
}

// CookieName is the session cookie's name in the suite (the default).
const CookieName = "tandem"

// NewManager returns a manager for cfg with fresh random keys, closed when
// the test ends.
func NewManager(t testing.TB, cfg core.Config) *core.Manager {
	t.Helper()
	k := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	_, _ = rand.Read(k.Hash)
	_, _ = rand.Read(k.Block)
	cfg.Keys = []core.KeyPair{k}
	m, err := core.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// NewServer starts h on a loopback test server, closed when the test ends.
func NewServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// Client is a browser-like client of a test server: it keeps cookies in a
// jar and does not follow redirects.
type Client struct {
	T    testing.TB
	Srv  *httptest.Server
	HC   *http.Client
	base *url.URL
}

// NewClient returns a client of srv with an empty jar.
func NewClient(t testing.TB, srv *httptest.Server) *Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := *srv.Client()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u, _ := url.Parse(srv.URL)
	return &Client{T: t, Srv: srv, HC: &hc, base: u}
}

// Do sends a request and returns the response with its body read.
func (c *Client) Do(method, path string) (*http.Response, string) {
	c.T.Helper()
	req, err := http.NewRequest(method, c.Srv.URL+path, nil)
	if err != nil {
		c.T.Fatal(err)
	}
	return Send(c.T, c.HC, req)
}

// Send sends req with hc and returns the response with its body read.
func Send(t testing.TB, hc *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// Expect sends a request and checks its status and body.
func (c *Client) Expect(method, path string, status int, body string) *http.Response {
	c.T.Helper()
	resp, got := c.Do(method, path)
	if resp.StatusCode != status || got != body {
		c.T.Fatalf("%s %s = %d %q, want %d %q", method, path, resp.StatusCode, got, status, body)
	}
	return resp
}

// Cookie returns the session cookie the jar holds, or "".
func (c *Client) Cookie() string {
	for _, ck := range c.HC.Jar.Cookies(c.base) {
		if ck.Name == CookieName {
			return ck.Value
		}
	}
	return ""
}

// GetWithCookie sends GET path carrying the given session cookie, outside
// any jar, and returns the body.
func GetWithCookie(t testing.TB, srv *httptest.Server, path, value string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: CookieName, Value: value})
	_, body := Send(t, srv.Client(), req)
	return body
}

// SessionCookie returns the session cookie a response sets, or nil.
func SessionCookie(resp *http.Response) *http.Cookie {
	for _, ck := range resp.Cookies() {
		if ck.Name == CookieName {
			return ck
		}
	}
	return nil
}
