// Package echosession wires Tandem sessions (package core) into Echo v4.
//
//	e := echo.New()
//	e.Use(echosession.Middleware(manager))
//	e.GET("/", func(c echo.Context) error {
//		s := echosession.Get(c)
//		return s.Set("visits", 1)
//	})
package echosession

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/tandemsession/tandem/core"
)

// Middleware loads the request's session and commits its changes through
// c.Response().Before, just before the header is written, or when the
// handler returns if it wrote nothing. Read the session with Get.
func Middleware(m *core.Manager) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			s := m.Load(r)
			r = r.WithContext(core.NewContext(r.Context(), s))
			c.SetRequest(r)
			res := c.Response()
			res.Before(func() {
				if err := s.CommitHeader(r.Context(), res.Header()); err != nil {
					res.Writer = m.ErrorWriter(res.Writer, r, err)
				}
			})
			err := next(c)
			switch {
			case res.Committed:
				s.Done(res, r) // commits what changed after the header
			case err == nil:
				// Nothing written: write the header now so the cookie goes out.
				res.WriteHeader(http.StatusOK)
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
