package core

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
)

// HookWriter joins a session to a framework whose response object writes
// the header itself and runs callbacks just before it does, as Echo's
// Response does with Before. The adapter creates it with
// [Session.HookWriter], puts it under the framework's response object (the
// framework writes to it), registers [HookWriter.Before] as one of those
// callbacks, and runs the rest of the chain through [HookWriter.Serve].
// The echosession packages (Echo v4 and v5) use it; applications do not.
//
// The framework's Flush and Hijack reach the writer below its response
// object without writing the header through it, so its callbacks would not
// run: HookWriter writes the header through the framework first (Flush) or
// commits without a cookie (Hijack). Unwrap keeps
// http.NewResponseController working.
type HookWriter struct {
	http.ResponseWriter
	s        *Session
	r        *http.Request
	top      http.ResponseWriter // the framework's response object
	wrote    atomic.Bool         // a final header went out through the writer
	hijacked atomic.Bool
	panicked atomic.Bool // the handler panicked: commit nothing
}

// HookWriter returns a HookWriter over w, the writer below top, the
// framework's response object (Echo's *Response). Writing the header
// through top must run its callbacks, then write to the HookWriter.
func (s *Session) HookWriter(w http.ResponseWriter, r *http.Request, top http.ResponseWriter) *HookWriter {
	return &HookWriter{ResponseWriter: w, s: s, r: r, top: top}
}

// Before commits the session into h, the header about to be written, and
// returns the writer the framework's response object must write to from now
// on: cur when the commit succeeded, otherwise a writer that answers with
// Config.ErrorHandler's response and discards the handler's. After a panic
// of the handler it commits nothing and returns cur.
func (w *HookWriter) Before(cur http.ResponseWriter, h http.Header) http.ResponseWriter {
	if w.panicked.Load() {
		return cur
	}
	if err := w.s.CommitHeader(w.r.Context(), h); err != nil {
		return w.s.m.ErrorWriter(cur, w.r, err)
	}
	return cur
}

// Serve runs next, the rest of the handler chain, and ends the request's
// session when it returns. When the header went out (or the connection was
// hijacked), it commits what changed after it. When nothing was written and
// next returned nil, it commits with the header still open, so that the
// cookie goes out with whatever writes the header later (the framework, an
// outer middleware that delays it, or net/http's implicit 200); a failed
// commit writes Config.ErrorHandler's response. When next returned an error
// and nothing was written, the framework's error handler writes the
// response and the commit happens then, in Before. When next panics,
// nothing is committed unless the header already went out, and the panic
// goes on.
func (w *HookWriter) Serve(next func() error) error {
	returned := false
	defer func() {
		if !returned {
			w.panicked.Store(true)
		}
	}()
	err := next()
	returned = true
	switch {
	case w.hijacked.Load() || w.wrote.Load():
		if w.s.HeaderCommitted() {
			w.s.Done(w, w.r)
		} else {
			// Written around the session: the cookie can no longer go out.
			_ = w.s.Finish(w.r.Context())
		}
	case err == nil:
		if w.s.CommitHeader(w.r.Context(), w.Header()) != nil {
			w.top.WriteHeader(http.StatusOK) // Before swaps in the error response
		}
	}
	return err
}

// WriteHeader implements http.ResponseWriter.
func (w *HookWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wrote.Store(true)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *HookWriter) Write(b []byte) (int, error) {
	w.wrote.Store(true)
	return w.ResponseWriter.Write(b)
}

// FlushError writes the 200 header through the framework's response object
// (so that the session commits first) unless a header went out, then
// flushes. http.ResponseController calls it.
func (w *HookWriter) FlushError() error {
	if !w.wrote.Load() {
		w.top.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (w *HookWriter) Flush() { _ = w.FlushError() }

// Hijack commits the session (no cookie can be sent on a hijacked
// connection), then hijacks.
func (w *HookWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.s.CommitHeader(w.r.Context(), nil); err != nil {
		return nil, nil, err
	}
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked.Store(true)
	}
	return conn, rw, err
}

// Unwrap returns the wrapped writer, for http.NewResponseController.
func (w *HookWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
