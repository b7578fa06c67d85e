package sessiontest

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// Case is one behaviour of the suite.
type Case struct {
	// Name names the case (and its subtest).
	Name string
	// Run checks the behaviour against f.
	Run func(t *testing.T, f Frontend)
}

// Cases returns the suite, in the order Run runs it.
func Cases() []Case {
	return []Case{
		{"NewSessionGetsCookie", newSessionGetsCookie},
		{"ReadOnlyNewSessionStoresNothing", readOnlyNewSessionStoresNothing},
		{"AnonymousClientKeepsItsCookie", anonymousClientKeepsItsCookie},
		{"LazyCookieReadOnlySetsNoCookie", lazyCookieReadOnlySetsNoCookie},
		{"ValuesPersistAcrossRequests", valuesPersistAcrossRequests},
		{"TamperedCookieIsANewSession", tamperedCookieIsANewSession},
		{"LoginRegeneratesID", loginRegeneratesID},
		{"RegenerateGraceServesParallelRequests", regenerateGrace},
		{"RequestFromBeforeRegenerateCommitsToTheNewID", requestFromBeforeRegenerate},
		{"LogoutInvalidates", logoutInvalidates},
		{"InvalidateThenSetStartsANewSession", invalidateThenSetStartsANewSession},
		{"FlashRoundTrip", flashRoundTrip},
		{"SetThenWriteSendsCookie", setThenWriteSendsCookie},
		{"WriteThenSetKeepsValue", writeThenSetKeepsValue},
		{"LazyWriteThenSetStoresValueButCannotSendCookie", lazyWriteThenSetStoresValue},
		{"WriteThenSetOnExistingSessionCommits", writeThenSetOnExistingSessionCommits},
		{"HandlerWritingNothingGetsCookie", handlerWritingNothingGetsCookie},
		{"StatusWithoutBodyCommits", statusWithoutBodyCommits},
		{"RedirectCommits", redirectCommits},
		{"HandlerErrorStillCommits", handlerErrorStillCommits},
		{"PanicCommitsNothing", panicCommitsNothing},
		{"SetOverValueLimitFailsAtOnce", setOverValueLimitFailsAtOnce},
		{"CommitOverLimit", commitOverLimit},
		{"NodeFull", nodeFull},
		{"Flush", flush},
		{"HijackCommits", hijackCommits},
		{"ConcurrentRequestsMerge", concurrentRequestsMerge},
		{"UnavailableSessionIsRetryable", unavailableSessionIsRetryable},
	}
}

// Run runs every case of the suite against f, each as a subtest.
func Run(t *testing.T, f Frontend) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			skip(t, f, c.Name)
			c.Run(t, f)
		})
	}
}

// skip skips the test when f says that case name does not apply to it.
func skip(t *testing.T, f Frontend, name string) {
	t.Helper()
	if s, ok := f.(Skipper); ok {
		if why := s.Skip(name); why != "" {
			t.Skip(why)
		}
	}
}

// query returns the request's query parameter name.
func query(c Ctx, name string) string { return c.Request().URL.Query().Get(name) }

// baseRoutes are the routes most cases share.
func baseRoutes() []Route {
	return []Route{
		{"POST", "/set", func(c Ctx) error {
			if err := c.Session().Set(query(c, "k"), query(c, "v")); err != nil {
				return c.String(http.StatusBadRequest, err.Error())
			}
			return c.String(http.StatusOK, "ok")
		}},
		{"GET", "/get", func(c Ctx) error {
			v, _, err := core.Get[string](c.Session(), query(c, "k"))
			if err != nil {
				return err
			}
			return c.String(http.StatusOK, v)
		}},
		{"POST", "/login", func(c Ctx) error {
			s := c.Session()
			s.Regenerate()
			if err := s.Set("user", query(c, "user")); err != nil {
				return err
			}
			return c.String(http.StatusOK, "welcome")
		}},
		{"POST", "/logout", func(c Ctx) error {
			c.Session().Invalidate()
			return c.String(http.StatusOK, "bye")
		}},
		{"POST", "/flash/add", func(c Ctx) error {
			if err := c.Session().AddFlash(query(c, "msg")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		}},
		{"GET", "/flash", func(c Ctx) error {
			return c.String(http.StatusOK, strings.Join(c.Session().Flashes(), ","))
		}},
	}
}

// env is one case's app: a manager, a server and a client.
type env struct {
	m   *core.Manager
	srv *httptest.Server
	c   *Client
}

// setup starts f's app for cfg with the base routes and extra ones.
func setup(t *testing.T, f Frontend, cfg core.Config, extra ...Route) *env {
	t.Helper()
	m := NewManager(t, cfg)
	srv := NewServer(t, f.Handler(m, append(baseRoutes(), extra...)))
	return &env{m: m, srv: srv, c: NewClient(t, srv)}
}

func (e *env) wantLen(t *testing.T, n int) {
	t.Helper()
	if got := e.m.Len(); got != n {
		t.Fatalf("sessions held: %d, want %d", got, n)
	}
}

func newSessionGetsCookie(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	resp := e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	ck := SessionCookie(resp)
	if ck == nil {
		t.Fatal("no session cookie on the first write")
	}
	if !ck.HttpOnly || ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie attributes: HttpOnly=%v Path=%q SameSite=%v", ck.HttpOnly, ck.Path, ck.SameSite)
	}
	e.wantLen(t, 1)
}

func readOnlyNewSessionStoresNothing(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	// By default a new session's cookie goes out with the first header,
	// written or not; nothing is stored until a value is set.
	resp := e.c.Expect("GET", "/get?k=a", 200, "")
	if SessionCookie(resp) == nil {
		t.Error("a new session's cookie did not go out with the header")
	}
	e.wantLen(t, 0)
	e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	e.c.Expect("GET", "/get?k=a", 200, "1")
	e.wantLen(t, 1)
}

// An anonymous client that never writes keeps one cookie; its first write
// replaces it once.
func anonymousClientKeepsItsCookie(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	if SessionCookie(e.c.Expect("GET", "/get?k=a", 200, "")) == nil {
		t.Fatal("no cookie for a new session")
	}
	for range 3 {
		if ck := SessionCookie(e.c.Expect("GET", "/get?k=a", 200, "")); ck != nil {
			t.Fatalf("cookie re-sent to an anonymous client: %v", ck)
		}
	}
	if SessionCookie(e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")) == nil {
		t.Fatal("the stored session's cookie was not issued")
	}
	if ck := SessionCookie(e.c.Expect("GET", "/get?k=a", 200, "1")); ck != nil {
		t.Fatalf("cookie re-sent after the session was stored: %v", ck)
	}
}

func lazyCookieReadOnlySetsNoCookie(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{Cookie: core.CookieConfig{Lazy: true}})
	resp := e.c.Expect("GET", "/get?k=a", 200, "")
	if ck := SessionCookie(resp); ck != nil {
		t.Errorf("read-only request of a new lazy session set cookie %v", ck)
	}
	resp = e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	if SessionCookie(resp) == nil {
		t.Error("no cookie on the first write of a lazy session")
	}
}

func valuesPersistAcrossRequests(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	first := e.c.Cookie()
	resp := e.c.Expect("POST", "/set?k=b&v=2", 200, "ok")
	if ck := SessionCookie(resp); ck != nil {
		t.Errorf("an existing session's cookie was sent again: %v", ck)
	}
	e.c.Expect("GET", "/get?k=a", 200, "1")
	e.c.Expect("GET", "/get?k=b", 200, "2")
	if e.c.Cookie() != first {
		t.Error("the session cookie changed without a reason")
	}
	e.wantLen(t, 1)
}

func tamperedCookieIsANewSession(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	good := e.c.Cookie()
	for _, bad := range []string{"not-a-valid-cookie", good[:len(good)/2], good + "x"} {
		if got := GetWithCookie(t, e.srv, "/get?k=a", bad); got != "" {
			t.Errorf("tampered cookie %q loaded %q", bad, got)
		}
	}
}

func loginRegeneratesID(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{RegenerateGrace: -1})
	e.c.Expect("POST", "/set?k=cart&v=apple", 200, "ok")
	before := e.c.Cookie()
	resp := e.c.Expect("POST", "/login?user=ann", 200, "welcome")
	if SessionCookie(resp) == nil {
		t.Fatal("login sent no new cookie")
	}
	after := e.c.Cookie()
	if after == before {
		t.Fatal("login kept the session cookie")
	}
	// The data moved to the new ID; the old cookie loads nothing.
	e.c.Expect("GET", "/get?k=user", 200, "ann")
	e.c.Expect("GET", "/get?k=cart", 200, "apple")
	if got := GetWithCookie(t, e.srv, "/get?k=cart", before); got != "" {
		t.Errorf("old cookie still loads cart %q", got)
	}
	if got := GetWithCookie(t, e.srv, "/get?k=user", after); got != "ann" {
		t.Errorf("new cookie loads user %q, want ann", got)
	}
	e.wantLen(t, 1)
}

func logoutInvalidates(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	e.c.Expect("POST", "/login?user=ann", 200, "welcome")
	old := e.c.Cookie()
	resp := e.c.Expect("POST", "/logout", 200, "bye")
	ck := SessionCookie(resp)
	if ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
		t.Fatalf("logout cookie = %v, want an expired, empty cookie", ck)
	}
	if e.c.Cookie() != "" {
		t.Error("the jar still holds the session cookie after logout")
	}
	e.c.Expect("GET", "/get?k=user", 200, "")
	if got := GetWithCookie(t, e.srv, "/get?k=user", old); got != "" {
		t.Errorf("old cookie still loads user %q after logout", got)
	}
	e.wantLen(t, 0)
}

// A value set after Invalidate (the logout's flash) starts a fresh session
// with a new ID; the old one is dead.
func invalidateThenSetStartsANewSession(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, Route{"POST", "/logout-flash", func(c Ctx) error {
		s := c.Session()
		s.Invalidate()
		if err := s.AddFlash("bye"); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/")
	}})
	e.c.Expect("POST", "/login?user=ann", 200, "welcome")
	old := e.c.Cookie()
	resp := e.c.Expect("POST", "/logout-flash", 303, "")
	ck := SessionCookie(resp)
	if ck == nil || ck.MaxAge < 0 || ck.Value == "" || ck.Value == old {
		t.Fatalf("cookie after logout with a flash = %v, want a new session's", ck)
	}
	e.c.Expect("GET", "/get?k=user", 200, "")
	e.c.Expect("GET", "/flash", 200, "bye")
	if got := GetWithCookie(t, e.srv, "/get?k=user", old); got != "" {
		t.Errorf("old cookie still loads user %q", got)
	}
	e.wantLen(t, 1)
}

func flashRoundTrip(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{})
	e.c.Expect("POST", "/flash/add?msg=hello", 204, "")
	e.c.Expect("POST", "/flash/add?msg=again", 204, "")
	e.c.Expect("GET", "/flash", 200, "hello,again")
	e.c.Expect("GET", "/flash", 200, "")
}

func setThenWriteSendsCookie(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, Route{"POST", "/set-write", func(c Ctx) error {
		if err := c.Session().Set("k", "v"); err != nil {
			return err
		}
		return c.String(http.StatusCreated, "body")
	}})
	resp := e.c.Expect("POST", "/set-write", 201, "body")
	if SessionCookie(resp) == nil {
		t.Fatal("no cookie when the handler set a value, then wrote the body")
	}
	e.c.Expect("GET", "/get?k=k", 200, "v")
}

// writeSet writes the body, then sets a value: a late write.
func writeSet(key string) Route {
	return Route{"POST", "/write-set", func(c Ctx) error {
		err := c.String(http.StatusOK, "body")
		if serr := c.Session().Set(key, "late"); serr != nil {
			return serr
		}
		return err
	}}
}

// The handler writes the body before it touches the session. The new
// session's cookie went out with the header, so the value set afterwards is
// found on the next request.
func writeThenSetKeepsValue(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, writeSet("k"))
	resp := e.c.Expect("POST", "/write-set", 200, "body")
	if SessionCookie(resp) == nil {
		t.Fatal("no cookie for a new session whose handler wrote the body first")
	}
	e.c.Expect("GET", "/get?k=k", 200, "late")
	e.wantLen(t, 1)
}

// With a lazy cookie the header of a write-first handler carries no cookie;
// the value set afterwards is still committed to the store, but the client
// cannot name it.
func lazyWriteThenSetStoresValue(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{Cookie: core.CookieConfig{Lazy: true}}, writeSet("k"))
	resp := e.c.Expect("POST", "/write-set", 200, "body")
	if ck := SessionCookie(resp); ck != nil {
		t.Fatalf("cookie %v sent for a lazy session before it was written", ck)
	}
	e.wantLen(t, 1)
	e.c.Expect("GET", "/get?k=k", 200, "")
}

func writeThenSetOnExistingSessionCommits(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, writeSet("late"))
	e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	e.c.Expect("POST", "/write-set", 200, "body")
	e.c.Expect("GET", "/get?k=late", 200, "late")
	e.c.Expect("GET", "/get?k=a", 200, "1")
}

func handlerWritingNothingGetsCookie(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, Route{"POST", "/silent", func(c Ctx) error {
		return c.Session().Set("k", "v")
	}})
	resp := e.c.Expect("POST", "/silent", 200, "")
	if SessionCookie(resp) == nil {
		t.Fatal("no cookie when the handler wrote nothing")
	}
	e.c.Expect("GET", "/get?k=k", 200, "v")
}

// A status without a body (gin's AbortWithStatus, Echo's NoContent).
func statusWithoutBodyCommits(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, Route{"POST", "/forbid", func(c Ctx) error {
		if err := c.Session().Set("k", "v"); err != nil {
			return err
		}
		return c.NoContent(http.StatusForbidden)
	}})
	resp := e.c.Expect("POST", "/forbid", 403, "")
	if SessionCookie(resp) == nil {
		t.Fatal("no cookie on a response with a status only")
	}
	e.c.Expect("GET", "/get?k=k", 200, "v")
}

func redirectCommits(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{},
		Route{"POST", "/login-redirect", func(c Ctx) error {
			s := c.Session()
			s.Regenerate()
			if err := s.Set("user", query(c, "user")); err != nil {
				return err
			}
			if err := s.AddFlash("welcome"); err != nil {
				return err
			}
			return c.Redirect(http.StatusSeeOther, "/home")
		}},
		Route{"POST", "/set-redirect", func(c Ctx) error {
			if err := c.Session().Set("k", query(c, "v")); err != nil {
				return err
			}
			return c.Redirect(http.StatusFound, "/")
		}},
	)
	e.c.Expect("POST", "/set?k=cart&v=apple", 200, "ok")
	before := e.c.Cookie()
	resp, _ := e.c.Do("POST", "/login-redirect?user=ann")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/home" {
		t.Fatalf("login redirect: %d to %q, want 303 to /home", resp.StatusCode, resp.Header.Get("Location"))
	}
	if SessionCookie(resp) == nil || e.c.Cookie() == before {
		t.Fatal("the redirect after Regenerate carried no new cookie")
	}
	e.c.Expect("GET", "/flash", 200, "welcome")
	e.c.Expect("GET", "/get?k=user", 200, "ann")
	e.c.Expect("GET", "/get?k=cart", 200, "apple")

	resp, _ = e.c.Do("POST", "/set-redirect?v=2")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" {
		t.Fatalf("set redirect: %d to %q, want 302 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.c.Expect("GET", "/get?k=k", 200, "2")
	e.wantLen(t, 1)
}

// A handler that returns an error after it changed the session: the error
// response goes out (the framework's way) with the cookie, and the change
// is committed.
func handlerErrorStillCommits(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{},
		Route{"POST", "/teapot", func(c Ctx) error {
			if err := c.Session().Set("k", "v"); err != nil {
				return err
			}
			return &StatusError{Code: http.StatusTeapot}
		}},
		Route{"POST", "/fail", func(c Ctx) error {
			if err := c.Session().Set("k2", "v2"); err != nil {
				return err
			}
			return errors.New("plain error")
		}},
	)
	resp, _ := e.c.Do("POST", "/teapot")
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("status %d, want 418", resp.StatusCode)
	}
	if SessionCookie(resp) == nil {
		t.Fatal("no cookie on the error response")
	}
	e.c.Expect("GET", "/get?k=k", 200, "v")
	if resp, _ := e.c.Do("POST", "/fail"); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	e.c.Expect("GET", "/get?k=k2", 200, "v2")
}

func panicCommitsNothing(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{}, Route{"POST", "/panic", func(c Ctx) error {
		_ = c.Session().Set("k", "half-done")
		panic("boom")
	}})
	resp, _ := e.c.Do("POST", "/panic")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	if ck := SessionCookie(resp); ck != nil {
		t.Errorf("a panicking handler's session got cookie %v", ck)
	}
	e.wantLen(t, 0)
	e.c.Expect("POST", "/set?k=k&v=v", 200, "ok")
	if resp, _ := e.c.Do("POST", "/panic"); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	e.c.Expect("GET", "/get?k=k", 200, "v")
}

func setOverValueLimitFailsAtOnce(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{Limits: core.Limits{MaxValueSize: 16, MaxSessionSize: 64}},
		Route{"POST", "/big", func(c Ctx) error {
			n, _ := strconv.Atoi(query(c, "n"))
			err := c.Session().Set("k", strings.Repeat("x", n))
			switch {
			case errors.Is(err, core.ErrValueTooLarge):
				return c.String(http.StatusRequestEntityTooLarge, "value")
			case errors.Is(err, core.ErrSessionTooLarge):
				return c.String(http.StatusRequestEntityTooLarge, "session")
			case err != nil:
				return err
			}
			return c.String(http.StatusOK, "ok")
		}})
	e.c.Expect("POST", "/big?n=100", 413, "value")
	e.wantLen(t, 0)
	e.c.Expect("POST", "/big?n=10", 200, "ok")
	e.wantLen(t, 1)
	e.c.Expect("GET", "/get?k=k", 200, strings.Repeat("x", 10))
}

// result is the answer of a request sent in the background.
type result struct {
	status int
	body   string
}

// background sends method path with c's cookies in a goroutine.
func (c *Client) background(method, path string) <-chan result {
	out := make(chan result, 1)
	go func() {
		req, err := http.NewRequest(method, c.Srv.URL+path, nil)
		if err != nil {
			out <- result{body: err.Error()}
			return
		}
		resp, err := c.HC.Do(req)
		if err != nil {
			out <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- result{resp.StatusCode, string(b)}
	}()
	return out
}

// slowSet is a route that sets ?k= to ?v=, tells set, waits for release,
// and answers "slow".
func slowSet(set chan<- struct{}, release <-chan struct{}) Route {
	return Route{"POST", "/slow", func(c Ctx) error {
		err := c.Session().Set(query(c, "k"), query(c, "v"))
		set <- struct{}{}
		if err != nil {
			return c.String(http.StatusBadRequest, err.Error())
		}
		<-release
		return c.String(http.StatusOK, "slow")
	}}
}

// Two requests of one session write different keys concurrently: each fits
// the limits alone, but the merge of the second commit does not, so it
// fails with the default error handler's 500 and stores nothing.
func commitOverLimit(t *testing.T, f Frontend) {
	value := strings.Repeat("x", 40) // 42 bytes encoded
	for _, tc := range []struct {
		name   string
		limits core.Limits
	}{
		{"ErrSessionTooLarge", core.Limits{MaxSessionSize: 100}},
		{"ErrTooManyAttributes", core.Limits{MaxAttributes: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, release := make(chan struct{}, 1), make(chan struct{})
			e := setup(t, f, core.Config{Limits: tc.limits}, slowSet(set, release))
			e.c.Expect("POST", "/set?k=base&v="+value, 200, "ok")
			slow := e.c.background("POST", "/slow?k=a&v="+value)
			<-set
			e.c.Expect("POST", "/set?k=b&v="+value, 200, "ok")
			close(release)
			if got := <-slow; got.status != http.StatusInternalServerError || got.body != "Internal Server Error\n" {
				t.Fatalf("over-limit commit = %d %q, want 500", got.status, got.body)
			}
			e.c.Expect("GET", "/get?k=a", 200, "")
			e.c.Expect("GET", "/get?k=b", 200, value)
			e.c.Expect("GET", "/get?k=base", 200, value)
		})
	}
}

// Concurrent requests of one session merge per attribute: different keys
// both stay; on the same key the later commit wins.
func concurrentRequestsMerge(t *testing.T, f Frontend) {
	set, release := make(chan struct{}, 1), make(chan struct{}, 1)
	e := setup(t, f, core.Config{}, slowSet(set, release))
	e.c.Expect("POST", "/set?k=base&v=0", 200, "ok")

	slow := e.c.background("POST", "/slow?k=a&v=1")
	<-set
	e.c.Expect("POST", "/set?k=b&v=2", 200, "ok")
	release <- struct{}{}
	if got := <-slow; got.status != 200 || got.body != "slow" {
		t.Fatalf("slow request: %d %q", got.status, got.body)
	}
	e.c.Expect("GET", "/get?k=a", 200, "1")
	e.c.Expect("GET", "/get?k=b", 200, "2")
	e.c.Expect("GET", "/get?k=base", 200, "0")

	slow = e.c.background("POST", "/slow?k=same&v=first-set-last-committed")
	<-set
	e.c.Expect("POST", "/set?k=same&v=second", 200, "ok")
	release <- struct{}{}
	<-slow
	e.c.Expect("GET", "/get?k=same", 200, "first-set-last-committed")
	e.wantLen(t, 1)
}

func nodeFull(t *testing.T, f Frontend) {
	e := setup(t, f, core.Config{Limits: core.Limits{MaxSessions: 1}})
	second := NewClient(t, e.srv)
	e.c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	// A first-visit session makes room for a new one...
	second.Expect("POST", "/set?k=a&v=2", 200, "ok")
	e.c.Expect("GET", "/get?k=a", 200, "")
	if n := e.m.Stats().Evicted; n != 1 {
		t.Errorf("Stats().Evicted = %d, want 1", n)
	}
	// ...a returning one does not.
	second.Expect("GET", "/get?k=a", 200, "2")
	resp := e.c.Expect("POST", "/set?k=a&v=1", 503, "Service Unavailable\n")
	if ck := SessionCookie(resp); ck != nil {
		t.Errorf("a refused session got cookie %v", ck)
	}
	// Reading needs no room, and the existing session still takes writes.
	e.c.Expect("GET", "/get?k=a", 200, "")
	second.Expect("POST", "/set?k=b&v=3", 200, "ok")
	second.Expect("GET", "/get?k=a", 200, "2")
	e.wantLen(t, 1)
}

// flush: the handler sets a value, flushes, then waits for release before
// it finishes the body. The response header (with the cookie) reaching the
// client while the handler waits proves that the flush went through the
// session's writer and wrote the header.
func flush(t *testing.T, f Frontend) {
	flusher := func(c Ctx) error {
		fl, ok := c.Writer().(http.Flusher)
		if !ok {
			return errors.New("the writer is no http.Flusher")
		}
		fl.Flush()
		return nil
	}
	controller := func(c Ctx) error {
		rc := http.NewResponseController(c.Writer())
		if err := rc.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
			return err
		}
		return rc.Flush()
	}
	for _, tc := range []struct {
		name       string
		writeFirst bool
		flush      func(Ctx) error
	}{
		{"Flusher", true, flusher},
		{"Flusher before any write", false, flusher},
		{"ResponseController", true, controller},
		{"ResponseController before any write", false, controller},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skip(t, f, "Flush/"+tc.name)
			release := make(chan struct{})
			e := setup(t, f, core.Config{}, Route{"GET", "/stream", func(c Ctx) error {
				if err := c.Session().Set("k", "streamed"); err != nil {
					return err
				}
				w := c.Writer()
				w.Header().Set("Content-Type", "text/plain")
				if tc.writeFirst {
					if _, err := io.WriteString(w, "first\n"); err != nil {
						return err
					}
				}
				if err := tc.flush(c); err != nil {
					_, _ = io.WriteString(w, "flush error: "+err.Error()+"\n")
					return nil // the client sees the error, not the first line, before release
				}
				if !tc.writeFirst {
					if _, err := io.WriteString(w, "first\n"); err != nil {
						return err
					}
					if err := tc.flush(c); err != nil {
						return err
					}
				}
				<-release
				_, err := io.WriteString(w, "second\n")
				return err
			}})
			resp, err := e.c.HC.Get(e.srv.URL + "/stream")
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
			if SessionCookie(resp) == nil {
				t.Fatal("no cookie on a flushed response")
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != "second\n" {
				t.Fatalf("rest = %q", rest)
			}
			e.c.Expect("GET", "/get?k=k", 200, "streamed")
		})
	}
}

// lockedBuffer collects a server's error log.
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

func hijackCommits(t *testing.T, f Frontend) {
	m := NewManager(t, core.Config{})
	h := f.Handler(m, []Route{{"GET", "/hijack", func(c Ctx) error {
		if err := c.Session().Set("k", "v"); err != nil {
			return err
		}
		conn, rw, err := http.NewResponseController(c.Writer()).Hijack()
		if err != nil {
			return err
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nraw ok")
		return rw.Flush()
	}}})
	// The server does not wait for hijacked connections: done tells when
	// the middleware finished.
	done := make(chan struct{})
	var errLog lockedBuffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.ServeHTTP(w, req)
		close(done)
	}))
	srv.Config.ErrorLog = log.New(&errLog, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	c := NewClient(t, srv)
	c.Expect("GET", "/hijack", 200, "raw ok")
	<-done
	srv.Close()
	if m.Len() != 1 {
		t.Errorf("sessions held: %d, want 1: a hijacking handler's session is committed", m.Len())
	}
	if s := errLog.String(); s != "" {
		t.Errorf("server logged: %s", s)
	}
}

// cluster is a replicator that names this node and fails every fetch, as
// a node does whose peer holding the session does not answer in time.
type cluster struct{ self string }

func (c cluster) Replicate(*core.Change) core.Ack  { return nil }
func (c cluster) Location() (owner, backup string) { return c.self, "" }
func (c cluster) Fetch(context.Context, string, core.Route, core.Stamp) (*core.Change, error) {
	return nil, errors.New("the owner does not answer")
}

// A request whose session lives on a node that cannot hand it over in
// time gets a retryable 503 and keeps its cookie; its handler never runs
// (it must not mistake the user for a new visitor).
func unavailableSessionIsRetryable(t *testing.T, f Frontend) {
	keys := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	_, _ = rand.Read(keys.Hash)
	_, _ = rand.Read(keys.Block)
	manager := func(self string) *core.Manager {
		m, err := core.NewManager(core.Config{Keys: []core.KeyPair{keys}, Replicator: cluster{self}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	owner := NewServer(t, f.Handler(manager("n1"), baseRoutes()))
	c := NewClient(t, owner)
	c.Expect("POST", "/set?k=a&v=1", 200, "ok")
	ran := false
	other := NewServer(t, f.Handler(manager("n2"), []Route{{"GET", "/get", func(Ctx) error { ran = true; return nil }}}))
	c.Srv = other
	resp := c.Expect("GET", "/get?k=a", 503, "Service Unavailable\n")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the 503")
	}
	if ran {
		t.Error("the handler ran for a session that could not be loaded")
	}
	if ck := SessionCookie(resp); ck != nil {
		t.Errorf("the cookie was replaced: %v", ck)
	}
}

// testClock is a settable clock for Config.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// After a login, a request that still brings the old cookie (sent before
// the login's response arrived) gets the new session and its cookie for
// Config.RegenerateGrace (without its cookie: the login's response gave
// that); after that, the old cookie loads nothing.
func regenerateGrace(t *testing.T, f Frontend) {
	clk := &testClock{now: time.Now()}
	e := setup(t, f, core.Config{Now: clk.Now, RegenerateGrace: 10 * time.Second})
	e.c.Expect("POST", "/set?k=cart&v=apple", 200, "ok")
	before := e.c.Cookie()
	e.c.Expect("POST", "/login?user=ann", 200, "welcome")
	after := e.c.Cookie()
	for range 3 { // a page's parallel requests
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/get?k=user", nil)
		req.AddCookie(&http.Cookie{Name: CookieName, Value: before})
		resp, body := Send(t, e.srv.Client(), req)
		if body != "ann" {
			t.Fatalf("old cookie within the grace window loads user %q, want ann", body)
		}
		if ck := SessionCookie(resp); ck != nil {
			t.Fatalf("old cookie within the grace window: cookie %v; the new one is the login's to give", ck)
		}
	}
	// A write with the old cookie lands in the new session.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/set?k=theme&v=dark", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: before})
	Send(t, e.srv.Client(), req)
	e.c.Expect("GET", "/get?k=theme", 200, "dark")
	e.wantLen(t, 1)
	clk.Add(11 * time.Second)
	if got := GetWithCookie(t, e.srv, "/get?k=cart", before); got != "" {
		t.Errorf("old cookie after the grace window loads cart %q", got)
	}
	if got := GetWithCookie(t, e.srv, "/get?k=cart", after); got != "apple" {
		t.Errorf("new cookie loads cart %q, want apple", got)
	}
}

// A request that loaded the session before a concurrent login committed
// and commits after it: its write goes to the new session, and its
// response deletes no cookie (no logout).
func requestFromBeforeRegenerate(t *testing.T, f Frontend) {
	entered, release := make(chan struct{}), make(chan struct{})
	e := setup(t, f, core.Config{}, Route{"POST", "/slowset", func(c Ctx) error {
		s := c.Session()
		entered <- struct{}{}
		<-release
		if err := s.Set(query(c, "k"), query(c, "v")); err != nil {
			return err
		}
		return c.String(http.StatusOK, "ok")
	}})
	e.c.Expect("POST", "/set?k=cart&v=apple", 200, "ok")
	before := e.c.Cookie()
	done := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/slowset?k=theme&v=dark", nil)
		req.AddCookie(&http.Cookie{Name: CookieName, Value: before})
		resp, err := e.srv.Client().Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- resp
	}()
	<-entered
	e.c.Expect("POST", "/login?user=ann", 200, "welcome")
	close(release)
	resp := <-done
	if resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the slow request failed: %v", resp)
	}
	if ck := SessionCookie(resp); ck != nil && (ck.MaxAge < 0 || ck.Value == before) {
		t.Fatalf("the slow request got cookie %v: the user would be logged out", ck)
	}
	e.c.Expect("GET", "/get?k=theme", 200, "dark")
	e.c.Expect("GET", "/get?k=user", 200, "ann")
	e.c.Expect("GET", "/get?k=cart", 200, "apple")
	e.wantLen(t, 1)
}
