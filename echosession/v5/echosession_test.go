package echosession_test

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/tandemsession/tandem/core"
	echosession "github.com/tandemsession/tandem/echosession/v5"
	"github.com/tandemsession/tandem/internal/sessiontest"
)

// The behaviours every front end shares are in the conformance suite
// (internal/sessiontest, run by TestConformance); these tests are Echo
// v5's own.

func getRoute(e *echo.Echo) {
	e.GET("/get", func(c *echo.Context) error {
		v, _, err := core.Get[string](echosession.Get(c), c.QueryParam("k"))
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, v)
	})
}

func TestGetWithoutMiddleware(t *testing.T) {
	e := newEcho()
	e.GET("/", func(c *echo.Context) error {
		if s := echosession.Get(c); s != nil {
			t.Errorf("Get without the middleware = %v, want nil", s)
		}
		return c.NoContent(http.StatusNoContent)
	})
	sessiontest.NewClient(t, sessiontest.NewServer(t, e)).Expect("GET", "/", 204, "")
}

// Errors go through Echo's HTTPErrorHandler, the default one (its JSON
// bodies) and a custom one; the session commits when it writes. With the
// writer hidden by an opaque middleware too.
func TestErrorsGoThroughEchoErrorHandler(t *testing.T) {
	for _, hidden := range []bool{false, true} {
		m := sessiontest.NewManager(t, core.Config{})
		e := newEcho()
		if hidden {
			e.Use(opaque)
		}
		e.Use(echosession.Middleware(m))
		getRoute(e)
		e.POST("/teapot", func(c *echo.Context) error {
			if err := echosession.Get(c).Set("k", "v"); err != nil {
				return err
			}
			return echo.NewHTTPError(http.StatusTeapot, "teapot")
		})
		e.POST("/fail", func(c *echo.Context) error {
			if err := echosession.Get(c).Set("k2", "v2"); err != nil {
				return err
			}
			return errors.New("plain error")
		})
		e.POST("/panic", func(c *echo.Context) error {
			_ = echosession.Get(c).Set("k3", "half-done")
			panic("boom")
		})
		c := sessiontest.NewClient(t, sessiontest.NewServer(t, e))
		if sessiontest.SessionCookie(c.Expect("POST", "/teapot", 418, `{"message":"teapot"}`+"\n")) == nil {
			t.Fatalf("hidden=%v: no cookie on the error response", hidden)
		}
		c.Expect("GET", "/get?k=k", 200, "v")
		c.Expect("POST", "/fail", 500, `{"message":"Internal Server Error"}`+"\n")
		c.Expect("GET", "/get?k=k2", 200, "v2")
		c.Expect("POST", "/panic", 500, `{"message":"Internal Server Error"}`+"\n")
		c.Expect("GET", "/get?k=k3", 200, "")

		var seen error
		e.HTTPErrorHandler = func(c *echo.Context, err error) {
			seen = err
			_ = c.String(http.StatusConflict, "custom")
		}
		c.Expect("POST", "/teapot", 409, "custom")
		var he *echo.HTTPError
		if !errors.As(seen, &he) || he.Code != http.StatusTeapot {
			t.Fatalf("hidden=%v: the custom error handler saw %v", hidden, seen)
		}
	}
}

// A failed commit replaces the response, also when the writer is hidden and
// the handler returned an error without writing.
func TestCommitFailureBehindOpaqueWriter(t *testing.T) {
	m := sessiontest.NewManager(t, core.Config{Limits: core.Limits{MaxSessions: 1}})
	e := newEcho()
	e.Use(opaque)
	e.Use(echosession.Middleware(m))
	e.POST("/set", func(c *echo.Context) error {
		if err := echosession.Get(c).Set("k", "v"); err != nil {
			return err
		}
		if c.QueryParam("fail") != "" {
			return echo.NewHTTPError(http.StatusBadRequest, "bad")
		}
		return nil
	})
	srv := sessiontest.NewServer(t, e)
	first := sessiontest.NewClient(t, srv)
	first.Expect("POST", "/set", 200, "")
	first.Expect("POST", "/set", 200, "") // a returning session: not evicted for a new one
	sessiontest.NewClient(t, srv).Expect("POST", "/set", 503, "Service Unavailable\n")
	sessiontest.NewClient(t, srv).Expect("POST", "/set?fail=1", 503, "Service Unavailable\n")
}

// middleware.Gzip replaces c.Response() and holds the header back until it
// knows whether it compresses: a redirect or a status without a body keeps
// its status and gets the cookie, and a compressed body does too.
func TestBehindGzip(t *testing.T) {
	m := sessiontest.NewManager(t, core.Config{})
	e := newEcho()
	e.Use(middleware.GzipWithConfig(middleware.GzipConfig{MinLength: 64}))
	e.Use(echosession.Middleware(m))
	getRoute(e)
	e.POST("/redirect", func(c *echo.Context) error {
		if err := echosession.Get(c).Set("k", "redirected"); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/get?k=k")
	})
	e.POST("/created", func(c *echo.Context) error {
		if err := echosession.Get(c).Set("k", "created"); err != nil {
			return err
		}
		return c.NoContent(http.StatusCreated)
	})
	e.POST("/big", func(c *echo.Context) error {
		if err := echosession.Get(c).Set("k", "big"); err != nil {
			return err
		}
		return c.String(http.StatusOK, strings.Repeat("x", 1000))
	})
	srv := sessiontest.NewServer(t, e)
	for _, tc := range []struct {
		path   string
		status int
		want   string
		body   int
	}{
		{"/redirect", http.StatusSeeOther, "redirected", 0},
		{"/created", http.StatusCreated, "created", 0},
		{"/big", http.StatusOK, "big", 1000},
	} {
		c := sessiontest.NewClient(t, srv) // a new session each time: the cookie must go out
		r, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, nil)
		r.Header.Set("Accept-Encoding", "gzip")
		resp, body := sessiontest.Send(t, c.HC, r)
		if resp.StatusCode != tc.status || sessiontest.SessionCookie(resp) == nil {
			t.Fatalf("%s: %d, cookie %v; want %d with a cookie", tc.path, resp.StatusCode, sessiontest.SessionCookie(resp), tc.status)
		}
		if tc.body > 0 {
			zr, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatalf("%s: body not gzip: %v", tc.path, err)
			}
			if b, _ := io.ReadAll(zr); len(b) != tc.body {
				t.Fatalf("%s: body %d bytes", tc.path, len(b))
			}
		}
		c.Expect("GET", "/get?k=k", 200, tc.want)
	}
}
