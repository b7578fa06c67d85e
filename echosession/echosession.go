// Package echosession wires Tandem sessions (package core) into Echo v4.
//
//	e := echo.New()
//	e.Use(echosession.Middleware(manager))
//	e.GET("/", func(c echo.Context) error {
//		s := echosession.Get(c)
//		return s.Set("visits", 1)
//	})
//
// The session is committed just before Echo writes the response header.
// When a handler returns an error, Echo's HTTPErrorHandler writes the
// response and the commit happens then; a custom HTTPErrorHandler that
// writes nothing at all leaves the changes uncommitted.
package echosession

import (
	"bufio"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/tandemsession/tandem/core"
)

// Middleware loads the request's session and commits its changes through
// c.Response().Before, just before the header is written, or when the
// handler returns if it wrote nothing. Read the session with Get.
//
// A handler that returns an error has its changes committed when Echo's
// error handler writes the response. When a handler panics, nothing it
// changed is committed unless the header already went out.
func Middleware(m *core.Manager) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			s := m.Load(r)
			if err := s.Err(); err != nil {
				// The session exists elsewhere but could not be brought
				// here in time: a retryable error, not a fresh session.
				m.HandleError(c.Response(), r, err)
				return nil
			}
			// Released when the handler returns (or panics); a commit that
			// Echo's error handler triggers later still goes through.
			defer s.Release()
			r = r.WithContext(core.NewContext(r.Context(), s))
			c.SetRequest(r)
			res := c.Response()
			w := &writer{ResponseWriter: res.Writer, res: res, s: s, m: m, r: r}
			res.Writer = w
			res.Before(w.before)
			defer func() {
				if !w.returned {
					w.panicked = true
				}
			}()
			err := next(c)
			w.returned = true
			switch {
			case w.hijacked || res.Committed:
				s.Done(res, r) // commits what changed after the header
			case err == nil:
				// Nothing written: write the header now so the cookie goes out.
				code := res.Status
				if code == 0 {
					code = http.StatusOK
				}
				res.WriteHeader(code)
			}
			// Otherwise Echo's error handler writes the response, and the
			// Before hook commits then.
			return err
		}
	}
}

// Get returns the request's session. It is nil when Middleware did not run.
func Get(c echo.Context) *core.Session {
	return core.FromContext(c.Request().Context())
}

// writer sits under echo.Response. Echo's Response.Flush and Hijack reach
// the wrapped writer without writing the header through Response, so its
// Before hooks would not run: writer runs them first. Unwrap keeps
// http.NewResponseController working.
type writer struct {
	http.ResponseWriter
	res      *echo.Response
	s        *core.Session
	m        *core.Manager
	r        *http.Request
	returned bool // the handler returned
	panicked bool // the handler panicked: commit nothing
	hijacked bool
}

// before is the Response.Before hook: it commits the session into the
// header about to be written, or swaps in the error response.
func (w *writer) before() {
	if w.panicked {
		return
	}
	if err := w.s.CommitHeader(w.r.Context(), w.res.Header()); err != nil {
		w.res.Writer = w.m.ErrorWriter(w.res.Writer, w.r, err)
	}
}

// FlushError writes the header through the Response (running its Before
// hooks) if it was not written yet, then flushes. http.ResponseController
// and echo.Response.Flush call it.
func (w *writer) FlushError() error {
	if !w.res.Committed {
		code := w.res.Status
		if code == 0 {
			code = http.StatusOK
		}
		w.res.WriteHeader(code)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (w *writer) Flush() { _ = w.FlushError() }

// Hijack commits the session (no cookie can be sent on a hijacked
// connection), then hijacks.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.s.CommitHeader(w.r.Context(), nil); err != nil {
		return nil, nil, err
	}
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, rw, err
}

// Unwrap returns the wrapped writer, for http.NewResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
