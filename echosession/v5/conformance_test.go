package echosession_test

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/tandemsession/tandem/core"
	echosession "github.com/tandemsession/tandem/echosession/v5"
	"github.com/tandemsession/tandem/internal/sessiontest"
)

// TestConformance runs the front ends' conformance suite against the Echo
// v5 adapter: as the first middleware after Recover (it reaches Echo's
// Response and commits from its Before hook), and behind a middleware whose
// writer has no Unwrap method (it wraps the writer itself).
func TestConformance(t *testing.T) {
	t.Run("Response", func(t *testing.T) { sessiontest.Run(t, echoFrontend{}) })
	t.Run("OpaqueWriter", func(t *testing.T) { sessiontest.Run(t, echoFrontend{opaque: true}) })
}

// echoFrontend serves the suite's routes with Echo v5: Recover, then (when
// opaque) a middleware that hides Echo's Response, then the session
// middleware.
type echoFrontend struct{ opaque bool }

func (f echoFrontend) Handler(m *core.Manager, routes []sessiontest.Route) http.Handler {
	e := newEcho()
	if f.opaque {
		e.Use(opaque)
	}
	e.Use(echosession.Middleware(m))
	for _, rt := range routes {
		e.Add(rt.Method, rt.Path, func(c *echo.Context) error { return toEcho(rt.Handle(echoCtx{c})) })
	}
	return e
}

func (f echoFrontend) Skip(name string) string {
	if f.opaque && strings.HasPrefix(name, "Flush/ResponseController") {
		return "the opaque writer hides the connection's write deadlines from http.ResponseController"
	}
	return ""
}

// newEcho returns a quiet Echo with middleware.Recover.
func newEcho() *echo.Echo {
	e := echo.New()
	e.Logger = slog.New(slog.DiscardHandler)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	return e
}

// opaque replaces c.Response() with a writer that forwards Flush and
// Hijack but has no Unwrap method, as middlewares written before
// http.ResponseController do; it puts the original back when it returns.
func opaque(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		orig := c.Response()
		c.SetResponse(&opaqueWriter{w: orig})
		defer c.SetResponse(orig)
		return next(c)
	}
}

type opaqueWriter struct{ w http.ResponseWriter }

func (o *opaqueWriter) Header() http.Header         { return o.w.Header() }
func (o *opaqueWriter) Write(b []byte) (int, error) { return o.w.Write(b) }
func (o *opaqueWriter) WriteHeader(code int)        { o.w.WriteHeader(code) }
func (o *opaqueWriter) Flush()                      { o.w.(http.Flusher).Flush() }
func (o *opaqueWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return o.w.(http.Hijacker).Hijack()
}

// toEcho turns the suite's StatusError into Echo's HTTPError.
func toEcho(err error) error {
	var se *sessiontest.StatusError
	if errors.As(err, &se) {
		return echo.NewHTTPError(se.Code, http.StatusText(se.Code))
	}
	return err
}

type echoCtx struct{ c *echo.Context }

func (x echoCtx) Request() *http.Request              { return x.c.Request() }
func (x echoCtx) Session() *core.Session              { return echosession.Get(x.c) }
func (x echoCtx) Writer() http.ResponseWriter         { return x.c.Response() }
func (x echoCtx) String(code int, body string) error  { return x.c.String(code, body) }
func (x echoCtx) Redirect(code int, url string) error { return x.c.Redirect(code, url) }
func (x echoCtx) NoContent(code int) error            { return x.c.NoContent(code) }
