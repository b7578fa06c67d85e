// Package echosession wires Tandem sessions (package core) into Echo v5.
// Its import path is github.com/tandemsession/tandem/echosession/v5; for
// Echo v4, import github.com/tandemsession/tandem/echosession.
//
//	e := echo.New()
//	e.Use(middleware.Recover()) // before the session middleware
//	e.Use(echosession.Middleware(manager))
//	e.POST("/visit", func(c *echo.Context) error {
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
	"net/http"

	"github.com/labstack/echo/v5"
	"github.com/tandemsession/tandem/core"
)

// Middleware loads the request's session and commits its changes just
// before the header is written, or when the handler returns if it wrote
// nothing (the cookie then goes out with the header whoever writes it).
// Read the session with Get.
//
// It finds Echo's *echo.Response under c.Response() with
// echo.UnwrapResponse and commits from a Response.Before hook. When a
// middleware registered before this one replaced c.Response() with a
// writer that has no Unwrap method, the Response cannot be reached: the
// middleware then wraps c.Response() itself, for the handlers it runs, and
// commits when a handler that returned an error wrote nothing (before
// Echo's error handler writes the response).
//
// A handler that returns an error has its changes committed when Echo's
// error handler writes the response. When a handler panics, nothing it
// changed is committed unless the header already went out; register a
// recovery middleware (middleware.Recover) before this one, so that it sees
// the panic.
func Middleware(m *core.Manager) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
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
			res, err := echo.UnwrapResponse(c.Response())
			if err != nil {
				return wrapped(c, s, r, next)
			}
			w := s.HookWriter(res.ResponseWriter, r, res)
			res.ResponseWriter = w
			res.Before(func() { res.ResponseWriter = w.Before(res.ResponseWriter, res.Header()) })
			return w.Serve(func() error { return next(c) })
		}
	}
}

// wrapped serves the request when Echo's Response cannot be reached: the
// handlers write through the session's own writer.
func wrapped(c *echo.Context, s *core.Session, r *http.Request, next echo.HandlerFunc) error {
	rw := c.Response()
	c.SetResponse(s.Writer(rw, r))
	defer c.SetResponse(rw) // also after a panic: nothing commits through it then
	err := next(c)
	// Nothing written: commit now, so that the cookie goes out with the
	// header that Echo's error handler or net/http writes. A failed commit
	// writes Config.ErrorHandler's response.
	s.Done(rw, r)
	return err
}

// Get returns the request's session. It is nil when Middleware did not run.
func Get(c *echo.Context) *core.Session {
	return core.FromContext(c.Request().Context())
}
