package ginsession_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
	"github.com/tandemsession/tandem/internal/sessiontest"
)

// TestConformance runs the front ends' conformance suite against the Gin
// adapter.
func TestConformance(t *testing.T) { sessiontest.Run(t, ginFrontend{}) }

// ginFrontend serves the suite's routes with Gin: gin's Recovery, then
// the session middleware.
type ginFrontend struct{}

func (ginFrontend) Handler(m *core.Manager, routes []sessiontest.Route) http.Handler {
	r := gin.New()
	r.Use(gin.RecoveryWithWriter(io.Discard))
	r.Use(ginsession.Middleware(m))
	for _, rt := range routes {
		r.Handle(rt.Method, rt.Path, func(c *gin.Context) {
			if err := rt.Handle(ginCtx{c}); err != nil && !errors.Is(err, core.ErrResponseAborted) {
				_ = c.AbortWithError(sessiontest.StatusOf(err), err)
			}
		})
	}
	return r
}

type ginCtx struct{ c *gin.Context }

func (g ginCtx) Request() *http.Request      { return g.c.Request }
func (g ginCtx) Session() *core.Session      { return ginsession.Get(g.c) }
func (g ginCtx) Writer() http.ResponseWriter { return g.c.Writer }

func (g ginCtx) String(code int, body string) error {
	g.c.String(code, "%s", body)
	return nil
}

func (g ginCtx) Redirect(code int, url string) error {
	g.c.Redirect(code, url)
	return nil
}

func (g ginCtx) NoContent(code int) error {
	g.c.AbortWithStatus(code)
	return nil
}
