package echosession_test

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/echosession"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const cookieName = "tandem"

// newManager returns a manager with fresh random keys and the given limits,
// closed when the test ends.
func newManager(t testing.TB, limits core.Limits) *core.Manager {
	t.Helper()
	return newManagerConfig(t, core.Config{Limits: limits})
}

// newManagerConfig returns a manager for cfg with fresh random keys, closed
// when the test ends.
func newManagerConfig(t testing.TB, cfg core.Config) *core.Manager {
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

// client is a browser-like client: it keeps cookies in a jar.
type client struct {
	t    testing.TB
	srv  *httptest.Server
	hc   *http.Client
	base *url.URL
}

func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t testing.TB, srv *httptest.Server) *client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := *srv.Client()
	hc.Jar = jar
	u, _ := url.Parse(srv.URL)
	return &client{t: t, srv: srv, hc: &hc, base: u}
}

// do sends a request and returns the response with its body read.
func (c *client) do(method, path string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return send(c.t, c.hc, req)
}

func send(t testing.TB, hc *http.Client, req *http.Request) (*http.Response, string) {
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

// expect sends a request and checks its status and body.
func (c *client) expect(method, path string, status int, body string) *http.Response {
	c.t.Helper()
	resp, got := c.do(method, path)
	if resp.StatusCode != status || got != body {
		c.t.Fatalf("%s %s = %d %q, want %d %q", method, path, resp.StatusCode, got, status, body)
	}
	return resp
}

// cookie returns the session cookie the jar holds, or "".
func (c *client) cookie() string {
	for _, ck := range c.hc.Jar.Cookies(c.base) {
		if ck.Name == cookieName {
			return ck.Value
		}
	}
	return ""
}

// getWithCookie sends GET path carrying the given session cookie, outside
// any jar, and returns the body.
func getWithCookie(t testing.TB, srv *httptest.Server, path, value string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: value})
	_, body := send(t, srv.Client(), req)
	return body
}

// sessionCookie returns the session cookie a response sets, or nil.
func sessionCookie(resp *http.Response) *http.Cookie {
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			return ck
		}
	}
	return nil
}

// newEcho returns an Echo with the session middleware and the routes most
// tests share.
func newEcho(m *core.Manager) *echo.Echo {
	e := echo.New()
	e.Logger.SetOutput(io.Discard)
	e.Use(recoverPanic)
	e.Use(echosession.Middleware(m))
	e.GET("/set", func(c echo.Context) error {
		if err := echosession.Get(c).Set(c.QueryParam("k"), c.QueryParam("v")); err != nil {
			return c.String(http.StatusBadRequest, err.Error())
		}
		return c.String(http.StatusOK, "ok")
	})
	e.GET("/get", func(c echo.Context) error {
		v, _, err := core.Get[string](echosession.Get(c), c.QueryParam("k"))
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, v)
	})
	e.POST("/login", func(c echo.Context) error {
		s := echosession.Get(c)
		s.Regenerate()
		if err := s.Set("user", c.QueryParam("user")); err != nil {
			return err
		}
		return c.String(http.StatusOK, "welcome")
	})
	e.POST("/logout", func(c echo.Context) error {
		echosession.Get(c).Invalidate()
		return c.String(http.StatusOK, "bye")
	})
	e.GET("/flash/add", func(c echo.Context) error {
		if err := echosession.Get(c).AddFlash(c.QueryParam("msg")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	e.GET("/flash", func(c echo.Context) error {
		return c.String(http.StatusOK, strings.Join(echosession.Get(c).Flashes(), ","))
	})
	return e
}

// recoverPanic turns a panic into an error for Echo's error handler, as
// echo's middleware.Recover does (without its extra dependencies).
func recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return next(c)
	}
}

func TestNewSessionGetsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	c := newClient(t, newServer(t, newEcho(m)))

	resp := c.expect("GET", "/set?k=a&v=1", 200, "ok")
	ck := sessionCookie(resp)
	if ck == nil {
		t.Fatal("no session cookie on the first write")
	}
	if !ck.HttpOnly || ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie attributes: HttpOnly=%v Path=%q SameSite=%v", ck.HttpOnly, ck.Path, ck.SameSite)
	}
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

func TestReadOnlyNewSessionStoresNothing(t *testing.T) {
	m := newManager(t, core.Limits{})
	c := newClient(t, newServer(t, newEcho(m)))

	// By default a new session's cookie goes out with the first header,
	// written or not; nothing is stored until a value is set.
	resp := c.expect("GET", "/get?k=a", 200, "")
	if sessionCookie(resp) == nil {
		t.Error("a new session's cookie did not go out with the header")
	}
	if m.Len() != 0 {
		t.Errorf("m.Len() = %d after a read-only request, want 0", m.Len())
	}
	c.expect("GET", "/set?k=a&v=1", 200, "ok")
	c.expect("GET", "/get?k=a", 200, "1")
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

func TestLazyCookieReadOnlySetsNoCookie(t *testing.T) {
	m := newManagerConfig(t, core.Config{Cookie: core.CookieConfig{Lazy: true}})
	c := newClient(t, newServer(t, newEcho(m)))

	resp := c.expect("GET", "/get?k=a", 200, "")
	if ck := sessionCookie(resp); ck != nil {
		t.Errorf("read-only request of a new lazy session set cookie %v", ck)
	}
	resp = c.expect("GET", "/set?k=a&v=1", 200, "ok")
	if sessionCookie(resp) == nil {
		t.Error("no cookie on the first write of a lazy session")
	}
}

func TestValuesPersistAcrossRequests(t *testing.T) {
	m := newManager(t, core.Limits{})
	c := newClient(t, newServer(t, newEcho(m)))

	c.expect("GET", "/set?k=a&v=1", 200, "ok")
	first := c.cookie()
	resp := c.expect("GET", "/set?k=b&v=2", 200, "ok")
	if ck := sessionCookie(resp); ck != nil {
		t.Errorf("an existing session's cookie was sent again: %v", ck)
	}
	c.expect("GET", "/get?k=a", 200, "1")
	c.expect("GET", "/get?k=b", 200, "2")
	if c.cookie() != first {
		t.Error("the session cookie changed without a reason")
	}
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

func TestTamperedCookieIsANewSession(t *testing.T) {
	m := newManager(t, core.Limits{})
	srv := newServer(t, newEcho(m))
	if got := getWithCookie(t, srv, "/get?k=a", "not-a-valid-cookie"); got != "" {
		t.Errorf("tampered cookie loaded %q", got)
	}
}

func TestLoginRegeneratesID(t *testing.T) {
	m := newManager(t, core.Limits{})
	srv := newServer(t, newEcho(m))
	c := newClient(t, srv)

	c.expect("GET", "/set?k=cart&v=apple", 200, "ok")
	before := c.cookie()
	resp := c.expect("POST", "/login?user=ann", 200, "welcome")
	if sessionCookie(resp) == nil {
		t.Fatal("login sent no new cookie")
	}
	after := c.cookie()
	if after == before {
		t.Fatal("login kept the session cookie")
	}
	c.expect("GET", "/get?k=user", 200, "ann")
	c.expect("GET", "/get?k=cart", 200, "apple")
	if got := getWithCookie(t, srv, "/get?k=cart", before); got != "" {
		t.Errorf("old cookie still loads cart %q", got)
	}
	if got := getWithCookie(t, srv, "/get?k=user", after); got != "ann" {
		t.Errorf("new cookie loads user %q, want ann", got)
	}
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

func TestLogoutInvalidates(t *testing.T) {
	m := newManager(t, core.Limits{})
	srv := newServer(t, newEcho(m))
	c := newClient(t, srv)

	c.expect("POST", "/login?user=ann", 200, "welcome")
	old := c.cookie()
	resp := c.expect("POST", "/logout", 200, "bye")
	ck := sessionCookie(resp)
	if ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
		t.Fatalf("logout cookie = %v, want an expired, empty cookie", ck)
	}
	if c.cookie() != "" {
		t.Error("the jar still holds the session cookie after logout")
	}
	c.expect("GET", "/get?k=user", 200, "")
	if got := getWithCookie(t, srv, "/get?k=user", old); got != "" {
		t.Errorf("old cookie still loads user %q after logout", got)
	}
	if m.Len() != 0 {
		t.Errorf("m.Len() = %d after logout, want 0", m.Len())
	}
}

func TestFlashRoundTrip(t *testing.T) {
	m := newManager(t, core.Limits{})
	c := newClient(t, newServer(t, newEcho(m)))

	c.expect("GET", "/flash/add?msg=hello", 204, "")
	c.expect("GET", "/flash/add?msg=again", 204, "")
	c.expect("GET", "/flash", 200, "hello,again")
	c.expect("GET", "/flash", 200, "")
}

func TestSetThenWriteSendsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/set-write", func(c echo.Context) error {
		_ = echosession.Get(c).Set("k", "v")
		return c.String(http.StatusCreated, "body")
	})
	c := newClient(t, newServer(t, e))

	resp := c.expect("GET", "/set-write", 201, "body")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie when the handler set a value, then wrote the body")
	}
	c.expect("GET", "/get?k=k", 200, "v")
}

// TestWriteThenSetKeepsValue: the handler writes the body before it touches
// the session. The new session's cookie went out with the header, so the
// value set afterwards is found on the next request.
func TestWriteThenSetKeepsValue(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/write-set", func(c echo.Context) error {
		err := c.String(http.StatusOK, "body")
		_ = echosession.Get(c).Set("k", "v")
		return err
	})
	c := newClient(t, newServer(t, e))

	resp := c.expect("GET", "/write-set", 200, "body")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie for a new session whose handler wrote the body first")
	}
	c.expect("GET", "/get?k=k", 200, "v")
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

// TestLazyWriteThenSetStoresValueButCannotSendCookie: with a lazy cookie
// the header of a write-first handler carries no cookie; the value set
// afterwards is still committed to the store, but the client cannot name it.
func TestLazyWriteThenSetStoresValueButCannotSendCookie(t *testing.T) {
	m := newManagerConfig(t, core.Config{Cookie: core.CookieConfig{Lazy: true}})
	e := newEcho(m)
	e.GET("/write-set", func(c echo.Context) error {
		err := c.String(http.StatusOK, "body")
		_ = echosession.Get(c).Set("k", "v")
		return err
	})
	c := newClient(t, newServer(t, e))

	resp := c.expect("GET", "/write-set", 200, "body")
	if ck := sessionCookie(resp); ck != nil {
		t.Fatalf("cookie %v sent for a lazy session before it was written", ck)
	}
	if m.Len() != 1 {
		t.Fatalf("m.Len() = %d, want 1: the value is committed though no cookie could go out", m.Len())
	}
	c.expect("GET", "/get?k=k", 200, "")
}

func TestWriteThenSetOnExistingSessionCommits(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/write-set", func(c echo.Context) error {
		err := c.String(http.StatusOK, "body")
		_ = echosession.Get(c).Set("late", "yes")
		return err
	})
	c := newClient(t, newServer(t, e))

	c.expect("GET", "/set?k=a&v=1", 200, "ok")
	c.expect("GET", "/write-set", 200, "body")
	c.expect("GET", "/get?k=late", 200, "yes")
}

func TestHandlerReturningNilWritingNothingGetsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/silent", func(c echo.Context) error {
		return echosession.Get(c).Set("k", "v")
	})
	c := newClient(t, newServer(t, e))

	resp := c.expect("GET", "/silent", 200, "")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie when the handler returned nil and wrote nothing")
	}
	c.expect("GET", "/get?k=k", 200, "v")
}

func TestHTTPErrorStillCommits(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/teapot", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k", "v"); err != nil {
			return err
		}
		return echo.NewHTTPError(http.StatusTeapot, "teapot")
	})
	e.GET("/fail", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k2", "v2"); err != nil {
			return err
		}
		return errors.New("plain error")
	})
	c := newClient(t, newServer(t, e))

	resp := c.expect("GET", "/teapot", 418, `{"message":"teapot"}`+"\n")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie on the error response")
	}
	c.expect("GET", "/get?k=k", 200, "v")
	c.expect("GET", "/fail", 500, `{"message":"Internal Server Error"}`+"\n")
	c.expect("GET", "/get?k=k2", 200, "v2")
}

func TestPanicCommitsNothing(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/panic", func(c echo.Context) error {
		_ = echosession.Get(c).Set("k", "half-done")
		panic("boom")
	})
	c := newClient(t, newServer(t, e))

	resp := c.expect("GET", "/panic", 500, `{"message":"Internal Server Error"}`+"\n")
	if ck := sessionCookie(resp); ck != nil {
		t.Errorf("a panicking handler's session got cookie %v", ck)
	}
	if m.Len() != 0 {
		t.Errorf("m.Len() = %d, want 0: a panicking handler commits nothing", m.Len())
	}
	c.expect("GET", "/set?k=k&v=v", 200, "ok")
	c.expect("GET", "/panic", 500, `{"message":"Internal Server Error"}`+"\n")
	c.expect("GET", "/get?k=k", 200, "v")
}

func TestSetOverValueLimitFailsAtOnce(t *testing.T) {
	m := newManager(t, core.Limits{MaxValueSize: 16, MaxSessionSize: 64})
	e := newEcho(m)
	e.GET("/big", func(c echo.Context) error {
		n, _ := strconv.Atoi(c.QueryParam("n"))
		err := echosession.Get(c).Set("k", strings.Repeat("x", n))
		switch {
		case errors.Is(err, core.ErrValueTooLarge):
			return c.String(http.StatusRequestEntityTooLarge, "value")
		case err != nil:
			return err
		}
		return c.String(http.StatusOK, "ok")
	})
	c := newClient(t, newServer(t, e))

	c.expect("GET", "/big?n=100", 413, "value")
	c.expect("GET", "/big?n=10", 200, "ok")
	if m.Len() != 1 {
		t.Fatalf("m.Len() = %d, want 1", m.Len())
	}
	c.expect("GET", "/get?k=k", 200, strings.Repeat("x", 10))
}

// TestCommitOverLimit has two requests of one session write different keys
// concurrently: each fits the limits alone, but the merge of the second
// commit does not, so it fails with the documented 500 and stores nothing.
func TestCommitOverLimit(t *testing.T) {
	value := strings.Repeat("x", 40) // 42 bytes encoded
	for _, tc := range []struct {
		name   string
		limits core.Limits
	}{
		{"ErrSessionTooLarge", core.Limits{MaxSessionSize: 100}},
		{"ErrTooManyAttributes", core.Limits{MaxAttributes: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, tc.limits)
			e := newEcho(m)
			setDone, release := make(chan struct{}), make(chan struct{})
			e.GET("/slow", func(c echo.Context) error {
				err := echosession.Get(c).Set("a", value)
				close(setDone)
				if err != nil {
					return c.String(http.StatusBadRequest, err.Error())
				}
				<-release
				return c.String(http.StatusOK, "slow")
			})
			c := newClient(t, newServer(t, e))
			c.expect("GET", "/set?k=base&v="+value, 200, "ok")

			type result struct {
				status int
				body   string
			}
			slow := make(chan result, 1)
			go func() {
				resp, err := c.hc.Get(c.srv.URL + "/slow")
				if err != nil {
					slow <- result{body: err.Error()}
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				slow <- result{resp.StatusCode, string(b)}
			}()
			<-setDone
			c.expect("GET", "/set?k=b&v="+value, 200, "ok")
			close(release)
			got := <-slow
			if got.status != http.StatusInternalServerError || got.body != "Internal Server Error\n" {
				t.Fatalf("over-limit commit = %d %q, want 500", got.status, got.body)
			}
			c.expect("GET", "/get?k=a", 200, "")
			c.expect("GET", "/get?k=b", 200, value)
			c.expect("GET", "/get?k=base", 200, value)
		})
	}
}

func TestNodeFull(t *testing.T) {
	m := newManager(t, core.Limits{MaxSessions: 1})
	srv := newServer(t, newEcho(m))
	first, second := newClient(t, srv), newClient(t, srv)

	first.expect("GET", "/set?k=a&v=1", 200, "ok")
	resp := second.expect("GET", "/set?k=a&v=2", 503, "Service Unavailable\n")
	if ck := sessionCookie(resp); ck != nil {
		t.Errorf("a refused session got cookie %v", ck)
	}
	second.expect("GET", "/get?k=a", 200, "")
	first.expect("GET", "/set?k=b&v=3", 200, "ok")
	first.expect("GET", "/get?k=a", 200, "1")
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

// TestFlush: the handler sets a value, flushes, then waits for release
// before it finishes the body. The response header (with the cookie)
// reaching the client while the handler waits proves the flush went through
// the session's writer.
func TestFlush(t *testing.T) {
	for _, tc := range []struct {
		name       string
		writeFirst bool
		flush      func(echo.Context) error
	}{
		{"Response.Flush", true, func(c echo.Context) error { c.Response().Flush(); return nil }},
		{"Response.Flush before any write", false, func(c echo.Context) error { c.Response().Flush(); return nil }},
		{"ResponseController", true, func(c echo.Context) error {
			rc := http.NewResponseController(c.Response())
			if err := rc.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
				return err
			}
			return rc.Flush()
		}},
		{"ResponseController before any write", false, func(c echo.Context) error {
			return http.NewResponseController(c.Response()).Flush()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, core.Limits{})
			e := newEcho(m)
			release := make(chan struct{})
			e.GET("/stream", func(c echo.Context) error {
				_ = echosession.Get(c).Set("k", "streamed")
				c.Response().Header().Set("Content-Type", "text/plain")
				if tc.writeFirst {
					if _, err := io.WriteString(c.Response(), "first\n"); err != nil {
						return err
					}
				}
				if err := tc.flush(c); err != nil {
					return err // the client cannot see the header before release
				}
				if !tc.writeFirst {
					if _, err := io.WriteString(c.Response(), "first\n"); err != nil {
						return err
					}
					c.Response().Flush()
				}
				<-release
				_, err := io.WriteString(c.Response(), "second\n")
				return err
			})
			c := newClient(t, newServer(t, e))

			resp, err := c.hc.Get(c.srv.URL + "/stream")
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			close(release)
			if err != nil || line != "first\n" {
				t.Fatalf("first line = %q, %v", line, err)
			}
			if sessionCookie(resp) == nil {
				t.Fatal("no cookie on a flushed response")
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != "second\n" {
				t.Fatalf("rest = %q", rest)
			}
			c.expect("GET", "/get?k=k", 200, "streamed")
		})
	}
}

// lockedBuffer collects the server's error log.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHijackCommits(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho(m)
	e.GET("/hijack", func(c echo.Context) error {
		_ = echosession.Get(c).Set("k", "v")
		conn, rw, err := http.NewResponseController(c.Response()).Hijack()
		if err != nil {
			return err
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nraw ok")
		return rw.Flush()
	})
	// The server does not wait for hijacked connections: done tells when
	// the middleware finished.
	done := make(chan struct{})
	var errLog lockedBuffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		e.ServeHTTP(w, req)
		close(done)
	}))
	srv.Config.ErrorLog = log.New(&errLog, "", 0)
	srv.Start()
	c := newClient(t, srv)

	c.expect("GET", "/hijack", 200, "raw ok")
	<-done
	srv.Close()
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1: a hijacking handler's session is committed", m.Len())
	}
	if s := errLog.String(); s != "" {
		t.Errorf("server logged: %s", s)
	}
}
