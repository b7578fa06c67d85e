package core

import (
	"net/http"
	"strings"
	"testing"
)

// discardWriter is a minimal ResponseWriter, so the benchmarks measure the
// middleware rather than a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func benchRequest(b *testing.B, m *Manager, h http.Handler, path string, cookie string) {
	req, _ := http.NewRequest(http.MethodGet, "http://example.test"+path, nil)
	if cookie != "" {
		req.Header.Set("Cookie", m.cfg.Cookie.Name+"="+cookie)
	}
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkMiddleware compares a bare net/http handler with the same handler
// behind the session middleware: read-only, a small write, an increment
// (read and write), a 4 KiB write through the Codec and through SetRaw.
func BenchmarkMiddleware(b *testing.B) {
	big := strings.Repeat("x", 4096)
	bigRaw := []byte(big)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := FromContext(r.Context()); s != nil {
			switch r.URL.Path {
			case "/read":
				var v int
				_, _ = s.Get("n", &v)
			case "/write":
				_ = s.Set("n", 2)
			case "/incr":
				var v int
				_, _ = s.Get("n", &v)
				_ = s.Set("n", v+1)
			case "/write4k":
				_ = s.Set("big", big)
			case "/write4kraw":
				_ = s.SetRaw("big", bigRaw)
			}
		}
		_, _ = w.Write([]byte("ok"))
	})
	m, _ := newManager(b, nil)
	c := newClient(b, m, func(w http.ResponseWriter, r *http.Request) { _ = FromContext(r.Context()).Set("n", 1) })
	c.do("/")
	mw := m.Middleware(handler)
	b.Run("bare", func(b *testing.B) { benchRequest(b, m, handler, "/read", "") })
	b.Run("read", func(b *testing.B) { benchRequest(b, m, mw, "/read", c.cookie) })
	b.Run("write", func(b *testing.B) { benchRequest(b, m, mw, "/write", c.cookie) })
	b.Run("incr", func(b *testing.B) { benchRequest(b, m, mw, "/incr", c.cookie) })
	b.Run("write4k", func(b *testing.B) { benchRequest(b, m, mw, "/write4k", c.cookie) })
	b.Run("write4kraw", func(b *testing.B) { benchRequest(b, m, mw, "/write4kraw", c.cookie) })
}
