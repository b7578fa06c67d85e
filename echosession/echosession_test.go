package echosession_test

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/echosession"
	"github.com/tandemsession/tandem/internal/sessiontest"
	"go.uber.org/goleak"
)

// The behaviours every front end shares are in the conformance suite
// (internal/sessiontest, run by TestConformance); these tests are Echo's
// own.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newManager returns a manager with fresh random keys and the given limits,
// closed when the test ends.
func newManager(t testing.TB, limits core.Limits) *core.Manager {
	t.Helper()
	return sessiontest.NewManager(t, core.Config{Limits: limits})
}

func getRoute(e *echo.Echo) {
	e.GET("/get", func(c echo.Context) error {
		v, _, err := core.Get[string](echosession.Get(c), c.QueryParam("k"))
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, v)
	})
}

func TestGetWithoutMiddleware(t *testing.T) {
	e := newEcho()
	e.GET("/", func(c echo.Context) error {
		if s := echosession.Get(c); s != nil {
			t.Errorf("Get without the middleware = %v, want nil", s)
		}
		return c.NoContent(http.StatusNoContent)
	})
	sessiontest.NewClient(t, sessiontest.NewServer(t, e)).Expect("GET", "/", 204, "")
}

// Errors go through Echo's HTTPErrorHandler, the default one (its JSON
// bodies) and a custom one; the session commits when it writes.
func TestErrorsGoThroughEchoErrorHandler(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho()
	e.Use(echosession.Middleware(m))
	getRoute(e)
	e.POST("/teapot", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k", "v"); err != nil {
			return err
		}
		return echo.NewHTTPError(http.StatusTeapot, "teapot")
	})
	e.POST("/fail", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k2", "v2"); err != nil {
			return err
		}
		return errors.New("plain error")
	})
	e.POST("/panic", func(c echo.Context) error {
		_ = echosession.Get(c).Set("k3", "half-done")
		panic("boom")
	})
	c := sessiontest.NewClient(t, sessiontest.NewServer(t, e))
	if sessiontest.SessionCookie(c.Expect("POST", "/teapot", 418, `{"message":"teapot"}`+"\n")) == nil {
		t.Fatal("no cookie on the error response")
	}
	c.Expect("GET", "/get?k=k", 200, "v")
	c.Expect("POST", "/fail", 500, `{"message":"Internal Server Error"}`+"\n")
	c.Expect("GET", "/get?k=k2", 200, "v2")
	c.Expect("POST", "/panic", 500, `{"message":"Internal Server Error"}`+"\n")
	c.Expect("GET", "/get?k=k3", 200, "")

	var seen error
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		seen = err
		_ = c.String(http.StatusConflict, "custom")
	}
	c.Expect("POST", "/teapot", 409, "custom")
	var he *echo.HTTPError
	if !errors.As(seen, &he) || he.Code != http.StatusTeapot {
		t.Fatalf("the custom error handler saw %v", seen)
	}
}

// middleware.Gzip holds the header back until it knows whether it
// compresses: a redirect or a status without a body keeps its status and
// gets the cookie, and a compressed body does too.
func TestBehindGzip(t *testing.T) {
	m := newManager(t, core.Limits{})
	e := newEcho()
	e.Use(middleware.GzipWithConfig(middleware.GzipConfig{MinLength: 64}))
	e.Use(echosession.Middleware(m))
	getRoute(e)
	e.POST("/redirect", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k", "redirected"); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/get?k=k")
	})
	e.POST("/created", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k", "created"); err != nil {
			return err
		}
		return c.NoContent(http.StatusCreated)
	})
	e.POST("/big", func(c echo.Context) error {
		if err := echosession.Get(c).Set("k", "big"); err != nil {
			return err
		}
		return c.String(http.StatusOK, strings.Repeat("x", 1000))
	})
	c := sessiontest.NewClient(t, sessiontest.NewServer(t, e))
	req := func(path string, status int, check func(*http.Response)) {
		t.Helper()
		r, _ := http.NewRequest(http.MethodPost, c.Srv.URL+path, nil)
		r.Header.Set("Accept-Encoding", "gzip")
		resp, err := c.HC.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != status || sessiontest.SessionCookie(resp) == nil && path == "/redirect" {
			t.Fatalf("%s: %d (cookie %v), want %d", path, resp.StatusCode, sessiontest.SessionCookie(resp), status)
		}
		if check != nil {
			check(resp)
		}
	}
	req("/redirect", http.StatusSeeOther, nil)
	c.Expect("GET", "/get?k=k", 200, "redirected")
	req("/created", http.StatusCreated, nil)
	c.Expect("GET", "/get?k=k", 200, "created")
	req("/big", http.StatusOK, func(resp *http.Response) {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("body not gzip: %v", err)
		}
		b, _ := io.ReadAll(zr)
		if len(b) != 1000 {
			t.Fatalf("body %d bytes", len(b))
		}
	})
	c.Expect("GET", "/get?k=k", 200, "big")

	// A new session's first answer, a redirect, carries its cookie.
	fresh := sessiontest.NewClient(t, c.Srv)
	r, _ := http.NewRequest(http.MethodPost, c.Srv.URL+"/redirect", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	resp, body := sessiontest.Send(t, fresh.HC, r)
	if resp.StatusCode != http.StatusSeeOther || sessiontest.SessionCookie(resp) == nil {
		t.Fatalf("new session's redirect: %d, cookie %v, body %q", resp.StatusCode, sessiontest.SessionCookie(resp), body)
	}
	fresh.Expect("GET", "/get?k=k", 200, "redirected")
}
