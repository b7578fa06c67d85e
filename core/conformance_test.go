package core_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/sessiontest"
)

// TestConformance runs the front ends' conformance suite against
// Manager.Middleware.
func TestConformance(t *testing.T) { sessiontest.Run(t, netHTTP{}) }

// netHTTP serves the suite's routes with net/http: a ServeMux behind
// Manager.Middleware, behind a recovery handler.
type netHTTP struct{}

func (netHTTP) Handler(m *core.Manager, routes []sessiontest.Route) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
			if err := rt.Handle(&httpCtx{w: w, r: r}); err != nil && !errors.Is(err, core.ErrResponseAborted) {
				code := sessiontest.StatusOf(err)
				http.Error(w, http.StatusText(code), code)
			}
		})
	}
	return recoverer(m.Middleware(mux))
}

// recoverer answers a panic with 500, through the writer it was given (not
// the session's): nothing is committed.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

type httpCtx struct {
	w http.ResponseWriter
	r *http.Request
}

func (c *httpCtx) Request() *http.Request      { return c.r }
func (c *httpCtx) Session() *core.Session      { return core.FromContext(c.r.Context()) }
func (c *httpCtx) Writer() http.ResponseWriter { return c.w }

func (c *httpCtx) String(code int, body string) error {
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(code)
	_, err := c.w.Write([]byte(body))
	return err
}

func (c *httpCtx) Redirect(code int, url string) error {
	http.Redirect(c.w, c.r, url, code)
	return nil
}

func (c *httpCtx) NoContent(code int) error {
	c.w.WriteHeader(code)
	return nil
}
