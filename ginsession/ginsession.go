// Package ginsession wires Tandem sessions (package core) into Gin.
//
//	r := gin.New()
//	r.Use(gin.Recovery(), ginsession.Middleware(manager))
//	r.POST("/visit", func(c *gin.Context) {
//		s := ginsession.Get(c)
//		_ = s.Set("visits", 1)
//	})
//
// core.FromContext(c) finds the session only when the engine's
// ContextWithFallback is set; Get(c) always does.
package ginsession

import (
	"bufio"
	"net"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
)

// Middleware loads the request's session and commits its changes just before
// the response header is written, or when the handlers return if they wrote
// nothing. Read the session with Get. When a handler panics, nothing it
// changed is committed unless the header already went out.
func Middleware(m *core.Manager) gin.HandlerFunc {
	// Writers are reused, as gin reuses its own: like c.Writer, they must
	// not be kept after the request.
	writers := sync.Pool{New: func() any { return new(writer) }}
	return func(c *gin.Context) {
		r := c.Request
		s := m.Load(r)
		if err := s.Err(); err != nil {
			// The session exists elsewhere but could not be brought here
			// in time: a retryable error, not a fresh session.
			m.HandleError(c.Writer, r, err)
			c.Abort()
			return
		}
		defer s.Release() // also when a handler panics
		c.Request = r.WithContext(core.NewContext(r.Context(), s))
		inner := c.Writer
		w := writers.Get().(*writer)
		*w = writer{ResponseWriter: inner, s: s, c: c}
		c.Writer = w
		returned := false
		defer func() {
			if !returned {
				// A handler panicked: hand the original writer back, so the
				// error response of a recovery middleware commits nothing.
				c.Writer = inner
			}
		}()
		c.Next()
		returned = true
		c.Writer = inner
		*w = writer{}
		writers.Put(w)
		if inner.Written() && !s.HeaderCommitted() {
			// Written around the session (by a middleware that kept the
			// original writer): the cookie can no longer go out.
			_ = s.Finish(c.Request.Context())
			return
		}
		s.Done(inner, c.Request)
	}
}

// Get returns the request's session. It is nil when Middleware did not run.
// It reads c.Request's context, so it needs no ContextWithFallback.
func Get(c *gin.Context) *core.Session {
	return core.FromContext(c.Request.Context())
}

// writer commits the session before gin writes the header. Unwrap keeps
// http.NewResponseController working (deadlines, full duplex).
type writer struct {
	gin.ResponseWriter
	s *core.Session
	c *gin.Context
}

func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *writer) open() bool { return w.s.Open(w.ResponseWriter, w.c.Request) }

func (w *writer) WriteHeaderNow() {
	if w.open() {
		w.ResponseWriter.WriteHeaderNow()
	}
}

func (w *writer) Write(b []byte) (int, error) {
	if !w.open() {
		return 0, core.ErrResponseAborted
	}
	return w.ResponseWriter.Write(b)
}

func (w *writer) WriteString(s string) (int, error) {
	if !w.open() {
		return 0, core.ErrResponseAborted
	}
	return w.ResponseWriter.WriteString(s)
}

func (w *writer) Flush() {
	if w.open() {
		w.ResponseWriter.Flush()
	}
}

func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.s.CommitHeader(w.c.Request.Context(), nil); err != nil {
		return nil, nil, err
	}
	return w.ResponseWriter.Hijack()
}
