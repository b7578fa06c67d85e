package echosession_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/echosession"
	"github.com/tandemsession/tandem/internal/sessiontest"
)

// TestConformance runs the front ends' conformance suite against the Echo
// v4 adapter.
func TestConformance(t *testing.T) { sessiontest.Run(t, echoFrontend{}) }

// echoFrontend serves the suite's routes with Echo v4: Recover, then the
// session middleware.
type echoFrontend struct{}

func (echoFrontend) Handler(m *core.Manager, routes []sessiontest.Route) http.Handler {
	e := newEcho()
	e.Use(echosession.Middleware(m))
	for _, rt := range routes {
		e.Add(rt.Method, rt.Path, func(c echo.Context) error { return toEcho(rt.Handle(echoCtx{c})) })
	}
	return e
}

// newEcho returns a quiet Echo with middleware.Recover.
func newEcho() *echo.Echo {
	e := echo.New()
	e.Logger.SetOutput(io.Discard)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	return e
}

// toEcho turns the suite's StatusError into Echo's HTTPError.
func toEcho(err error) error {
	var se *sessiontest.StatusError
	if errors.As(err, &se) {
		return echo.NewHTTPError(se.Code)
	}
	return err
}

type echoCtx struct{ c echo.Context }

func (x echoCtx) Request() *http.Request              { return x.c.Request() }
func (x echoCtx) Session() *core.Session              { return echosession.Get(x.c) }
func (x echoCtx) Writer() http.ResponseWriter         { return x.c.Response() }
func (x echoCtx) String(code int, body string) error  { return x.c.String(code, body) }
func (x echoCtx) Redirect(code int, url string) error { return x.c.Redirect(code, url) }
func (x echoCtx) NoContent(code int) error            { return x.c.NoContent(code) }
