package ginsession_test

import (
	"bufio"
	"crypto/rand"
	"errors"
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

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
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

// newEngine returns a gin engine with the session middleware and the routes
// most tests share.
func newEngine(m *core.Manager) *gin.Engine {
	r := gin.New()
	r.Use(gin.RecoveryWithWriter(io.Discard))
	r.Use(ginsession.Middleware(m))
	r.GET("/set", func(c *gin.Context) {
		if err := ginsession.Get(c).Set(c.Query("k"), c.Query("v")); err != nil {
			c.String(http.StatusBadRequest, err.Error())
			return
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/get", func(c *gin.Context) {
		v, _, err := core.Get[string](ginsession.Get(c), c.Query("k"))
		if err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, v)
	})
	r.POST("/login", func(c *gin.Context) {
		s := ginsession.Get(c)
		s.Regenerate()
		if err := s.Set("user", c.Query("user")); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "welcome")
	})
	r.POST("/logout", func(c *gin.Context) {
		ginsession.Get(c).Invalidate()
		c.String(http.StatusOK, "bye")
	})
	r.GET("/flash/add", func(c *gin.Context) {
		if err := ginsession.Get(c).AddFlash(c.Query("msg")); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.Status(http.StatusNoContent)
	})
	r.GET("/flash", func(c *gin.Context) {
		c.String(http.StatusOK, strings.Join(ginsession.Get(c).Flashes(), ","))
	})
	return r
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

func TestNewSessionGetsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	c := newClient(t, newServer(t, newEngine(m)))

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
	c := newClient(t, newServer(t, newEngine(m)))

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
	c := newClient(t, newServer(t, newEngine(m)))

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
	c := newClient(t, newServer(t, newEngine(m)))

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
	srv := newServer(t, newEngine(m))
	if got := getWithCookie(t, srv, "/get?k=a", "not-a-valid-cookie"); got != "" {
		t.Errorf("tampered cookie loaded %q", got)
	}
}

func TestLoginRegeneratesID(t *testing.T) {
	m := newManager(t, core.Limits{})
	srv := newServer(t, newEngine(m))
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
	// The data moved to the new ID.
	c.expect("GET", "/get?k=user", 200, "ann")
	c.expect("GET", "/get?k=cart", 200, "apple")
	// The old cookie no longer loads anything.
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
	srv := newServer(t, newEngine(m))
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
	c := newClient(t, newServer(t, newEngine(m)))

	c.expect("GET", "/flash/add?msg=hello", 204, "")
	c.expect("GET", "/flash/add?msg=again", 204, "")
	c.expect("GET", "/flash", 200, "hello,again")
	c.expect("GET", "/flash", 200, "")
}

func TestSetThenWriteSendsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	r := newEngine(m)
	r.GET("/set-write", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "v")
		c.String(http.StatusCreated, "body")
	})
	c := newClient(t, newServer(t, r))

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
	r := newEngine(m)
	r.GET("/write-set", func(c *gin.Context) {
		c.String(http.StatusOK, "body")
		_ = ginsession.Get(c).Set("k", "v")
	})
	c := newClient(t, newServer(t, r))

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
	r := newEngine(m)
	r.GET("/write-set", func(c *gin.Context) {
		c.String(http.StatusOK, "body")
		_ = ginsession.Get(c).Set("k", "v")
	})
	c := newClient(t, newServer(t, r))

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
	r := newEngine(m)
	r.GET("/write-set", func(c *gin.Context) {
		c.String(http.StatusOK, "body")
		_ = ginsession.Get(c).Set("late", "yes")
	})
	c := newClient(t, newServer(t, r))

	c.expect("GET", "/set?k=a&v=1", 200, "ok")
	c.expect("GET", "/write-set", 200, "body")
	c.expect("GET", "/get?k=late", 200, "yes")
}

func TestHandlerWritingNothingGetsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	r := newEngine(m)
	r.GET("/silent", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "v")
	})
	c := newClient(t, newServer(t, r))

	resp := c.expect("GET", "/silent", 200, "")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie when the handler wrote nothing")
	}
	c.expect("GET", "/get?k=k", 200, "v")
}

func TestAbortWithStatusCommits(t *testing.T) {
	m := newManager(t, core.Limits{})
	r := newEngine(m)
	r.GET("/abort", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "v")
		c.AbortWithStatus(http.StatusForbidden)
	})
	c := newClient(t, newServer(t, r))

	resp := c.expect("GET", "/abort", 403, "")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie on an aborted response")
	}
	c.expect("GET", "/get?k=k", 200, "v")
}

func TestPanicCommitsNothing(t *testing.T) {
	m := newManager(t, core.Limits{})
	r := newEngine(m)
	r.GET("/panic", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "half-done")
		panic("boom")
	})
	c := newClient(t, newServer(t, r))

	resp := c.expect("GET", "/panic", 500, "")
	if ck := sessionCookie(resp); ck != nil {
		t.Errorf("a panicking handler's session got cookie %v", ck)
	}
	if m.Len() != 0 {
		t.Errorf("m.Len() = %d, want 0: a panicking handler commits nothing", m.Len())
	}
	c.expect("GET", "/set?k=k&v=v", 200, "ok")
	c.expect("GET", "/panic", 500, "")
	c.expect("GET", "/get?k=k", 200, "v")
}

func TestSetOverValueLimitFailsAtOnce(t *testing.T) {
	m := newManager(t, core.Limits{MaxValueSize: 16, MaxSessionSize: 64})
	r := newEngine(m)
	r.GET("/big", func(c *gin.Context) {
		n, _ := strconv.Atoi(c.Query("n"))
		err := ginsession.Get(c).Set("k", strings.Repeat("x", n))
		switch {
		case errors.Is(err, core.ErrValueTooLarge):
			c.String(http.StatusRequestEntityTooLarge, "value")
		case errors.Is(err, core.ErrSessionTooLarge):
			c.String(http.StatusRequestEntityTooLarge, "session")
		case err != nil:
			c.String(http.StatusInternalServerError, err.Error())
		default:
			c.String(http.StatusOK, "ok")
		}
	})
	c := newClient(t, newServer(t, r))

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
			r := newEngine(m)
			setDone, release := make(chan struct{}), make(chan struct{})
			r.GET("/slow", func(c *gin.Context) {
				if err := ginsession.Get(c).Set("a", value); err != nil {
					c.String(http.StatusBadRequest, err.Error())
					close(setDone)
					return
				}
				close(setDone)
				<-release
				c.String(http.StatusOK, "slow")
			})
			c := newClient(t, newServer(t, r))
			c.expect("GET", "/set?k=base&v="+value, 200, "ok")

			type result struct {
				status int
				body   string
			}
			slow := make(chan result, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodGet, c.srv.URL+"/slow", nil)
				resp, err := c.hc.Do(req)
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
	srv := newServer(t, newEngine(m))
	first, second := newClient(t, srv), newClient(t, srv)

	first.expect("GET", "/set?k=a&v=1", 200, "ok")
	resp := second.expect("GET", "/set?k=a&v=2", 503, "Service Unavailable\n")
	if ck := sessionCookie(resp); ck != nil {
		t.Errorf("a refused session got cookie %v", ck)
	}
	// Reading needs no room, and the existing session still takes writes.
	second.expect("GET", "/get?k=a", 200, "")
	first.expect("GET", "/set?k=b&v=3", 200, "ok")
	first.expect("GET", "/get?k=a", 200, "1")
	if m.Len() != 1 {
		t.Errorf("m.Len() = %d, want 1", m.Len())
	}
}

// streamRoute registers a handler that sets a value, flushes with flush,
// then waits for release before it finishes the body. The response header
// (with the cookie) reaching the client while the handler waits proves the
// flush went through the session's writer.
func streamRoute(r *gin.Engine, path string, release <-chan struct{}, flush func(*gin.Context) error) {
	r.GET(path, func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "streamed")
		c.Header("Content-Type", "text/plain")
		if _, err := c.Writer.WriteString("first\n"); err != nil {
			return
		}
		if err := flush(c); err != nil {
			_, _ = c.Writer.WriteString("flush error: " + err.Error() + "\n")
			return // the client could not see the first line before release
		}
		<-release
		_, _ = c.Writer.WriteString("second\n")
	})
}

func TestFlush(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flush func(*gin.Context) error
	}{
		{"Writer.Flush", func(c *gin.Context) error { c.Writer.Flush(); return nil }},
		{"ResponseController", func(c *gin.Context) error {
			rc := http.NewResponseController(c.Writer)
			if err := rc.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
				return err
			}
			return rc.Flush()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, core.Limits{})
			r := newEngine(m)
			release := make(chan struct{})
			streamRoute(r, "/stream", release, tc.flush)
			c := newClient(t, newServer(t, r))

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

func TestFlushBeforeWriteSendsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	r := newEngine(m)
	r.GET("/flush-first", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "v")
		if err := http.NewResponseController(c.Writer).Flush(); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		_, _ = c.Writer.WriteString("body")
	})
	c := newClient(t, newServer(t, r))

	resp := c.expect("GET", "/flush-first", 200, "body")
	if sessionCookie(resp) == nil {
		t.Fatal("no cookie when the handler flushed before writing")
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
	r := newEngine(m)
	r.GET("/hijack", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "v")
		conn, rw, err := http.NewResponseController(c.Writer).Hijack()
		if err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nraw ok")
		_ = rw.Flush()
	})
	// The server does not wait for hijacked connections: done tells when
	// the middleware finished.
	done := make(chan struct{})
	var errLog lockedBuffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.ServeHTTP(w, req)
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
