package core

import (
	"bufio"
	"context"
	"net"
	"net/http"
)

type contextKey struct{}

// NewContext returns a copy of ctx carrying s. Adapters use it; handlers
// read the session back with FromContext. The first call per session costs
// no allocation: the context lives inside the Session.
func NewContext(ctx context.Context, s *Session) context.Context {
	if s.ctx.s == nil {
		s.ctx = sessionContext{Context: ctx, s: s}
		return &s.ctx
	}
	return context.WithValue(ctx, contextKey{}, s)
}

// sessionContext is a context carrying a session, allocated with it.
type sessionContext struct {
	context.Context
	s *Session
}

func (c *sessionContext) Value(key any) any {
	if key == (contextKey{}) {
		return c.s
	}
	return c.Context.Value(key)
}

// FromContext returns the session the middleware put in ctx, or nil when
// there is none (the request did not pass through the middleware).
//
// The adapters put the session in the request's context. A *gin.Context
// is a context.Context too, but its Value reaches the request's context only
// when the engine's ContextWithFallback is set: call
// FromContext(c.Request.Context()), or ginsession.Get(c), rather than
// FromContext(c). Echo's Context is no context.Context: use
// echosession.Get(c).
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(contextKey{}).(*Session)
	return s
}

// Middleware loads the request's session, puts it in the request's context
// (read it with FromContext) and commits the changes when the response header
// is written, or when next returns if it wrote nothing. The response body is
// never buffered. A commit that fails before the header went out replaces the
// response with Config.ErrorHandler's.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Load(r)
		if err := s.Err(); err != nil {
			m.HandleError(w, r, err)
			return
		}
		defer s.Release() // also when next panics
		r = r.WithContext(NewContext(r.Context(), s))
		next.ServeHTTP(s.Writer(w, r), r)
		s.Done(w, r)
	})
}

// Writer returns w wrapped so that the session commits, once, just before
// the response header goes out through it (WriteHeader, Write, Flush), and
// before a Hijack; informational (1xx) headers pass through. The wrapper
// keeps http.NewResponseController working (Unwrap). Call Done when the
// handler returns. Manager.Middleware uses it, and so do adapters that hand
// the handler a plain http.ResponseWriter; call it once per request.
func (s *Session) Writer(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	s.w = responseWriter{ResponseWriter: w, s: s, r: r}
	return &s.w
}

// responseWriter commits the session before the first header write. It
// keeps Flush, Hijack and http.NewResponseController working (Unwrap).
type responseWriter struct {
	http.ResponseWriter
	s     *Session
	r     *http.Request
	wrote bool // a final header went out through the writer
}

// Unwrap returns the wrapped writer, for http.NewResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WriteHeader implements http.ResponseWriter.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // informational: the final header is still to come
		return
	}
	w.wrote = true
	if w.s.Open(w.ResponseWriter, w.r) {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write implements http.ResponseWriter.
func (w *responseWriter) Write(b []byte) (int, error) {
	w.wrote = true
	if !w.s.Open(w.ResponseWriter, w.r) {
		return 0, ErrResponseAborted
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher. A flush before anything was written writes
// the 200 header first, through the wrapped writer, as net/http would: a
// framework's writer below sees the header go out.
func (w *responseWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.s.Open(w.ResponseWriter, w.r) {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack implements http.Hijacker. The session is committed first; the
// cookie cannot be sent on a hijacked connection.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.s.CommitHeader(w.r.Context(), nil); err != nil {
		return nil, nil, err
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Open commits the session, once, just before the response header goes out
// through w, and reports whether the handler's response may proceed. When
// the commit fails it writes Config.ErrorHandler's response to w instead and
// returns false: the caller drops what the handler writes from then on.
// Writer wrappers in adapters call it from every method that writes the
// header.
func (s *Session) Open(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	done, err := s.headerDone, s.headerErr
	s.mu.Unlock()
	if done {
		return err == nil
	}
	if err := s.CommitHeader(r.Context(), w.Header()); err != nil {
		s.m.HandleError(w, r, err)
		return false
	}
	return true
}

// Done ends the request's session when the handler returned: if nothing was
// written it commits with the header still open (through Open), otherwise it
// commits what changed after the header (Finish). It releases the session.
func (s *Session) Done(w http.ResponseWriter, r *http.Request) {
	defer s.Release()
	s.mu.Lock()
	done, err := s.headerDone, s.headerErr
	s.mu.Unlock()
	switch {
	case !done:
		s.Open(w, r)
	case err == nil:
		_ = s.Finish(r.Context())
	}
}

// ErrorWriter returns a writer that answers with Config.ErrorHandler's
// response for err on its first write and discards the handler's writes.
// Adapters whose framework writes the header itself (Echo) swap it in when
// the commit fails.
func (m *Manager) ErrorWriter(w http.ResponseWriter, r *http.Request, err error) http.ResponseWriter {
	return &errorWriter{ResponseWriter: w, m: m, r: r, err: err}
}

type errorWriter struct {
	http.ResponseWriter
	m    *Manager
	r    *http.Request
	err  error
	sent bool
}

func (w *errorWriter) WriteHeader(int) {
	if !w.sent {
		w.sent = true
		w.m.HandleError(w.ResponseWriter, w.r, w.err)
	}
}

func (w *errorWriter) Write([]byte) (int, error) {
	w.WriteHeader(0)
	return 0, ErrResponseAborted
}

func (w *errorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
