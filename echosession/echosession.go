// Package echosession wires Tandem sessions (package core) into Echo v4.
// For Echo v5, import github.com/tandemsession/tandem/echosession/v5.
//
//	e := echo.New()
//	e.Use(middleware.Recover()) // before the session middleware
//	e.Use(echosession.Middleware(manager))
//	e.POST("/visit", func(c echo.Context) error {
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
	"github.com/labstack/echo/v4"
	"github.com/tandemsession/tandem/core"
)

// Middleware loads the request's session and commits its changes through
// c.Response().Before, just before the header is written, or when the
// handler returns if it wrote nothing (the cookie then goes out with the
// header whoever writes it). Read the session with Get.
//
// A handler that returns an error has its changes committed when Echo's
// error handler writes the response. When a handler panics, nothing it
// changed is committed unless the header already went out; register a
// recovery middleware before this one, so that it sees the panic.
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
			w := s.HookWriter(res.Writer, r, res)
			res.Writer = w
			res.Before(func() { res.Writer = w.Before(res.Writer, res.Header()) })
			return w.Serve(func() error { return next(c) })
		}
	}
}

// Get returns the request's session. It is nil when Middleware did not run.
func Get(c echo.Context) *core.Session {
	return core.FromContext(c.Request().Context())
}
