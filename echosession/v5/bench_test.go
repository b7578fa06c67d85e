package echosession_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/tandemsession/tandem/core"
	echosession "github.com/tandemsession/tandem/echosession/v5"
	"github.com/tandemsession/tandem/internal/sessiontest"
)

// discardWriter is the cheapest http.ResponseWriter: it keeps the header map
// (cleared between requests) and throws the body away, so the benchmarks
// measure the middleware rather than a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) reset()                      { clear(w.h); w.code = 0 }

var blob4K = strings.Repeat("x", 4096)

// BenchmarkEcho5 compares, in one run, a bare Echo v5 handler with the same
// handler behind echosession: a request that only reads an existing
// session, one that writes a small attribute, and one that writes a 4 KiB
// attribute.
func BenchmarkEcho5(b *testing.B) {
	ok := func(c *echo.Context) error { return c.String(http.StatusOK, "ok") }
	b.Run("bare", func(b *testing.B) {
		e := echo.New()
		e.GET("/", ok)
		serve(b, e, "")
	})
	for _, bc := range []struct {
		name string
		fn   func(s *core.Session) error
	}{
		{"read", func(s *core.Session) error {
			_, _, err := core.Get[string](s, "user")
			return err
		}},
		{"write-small", func(s *core.Session) error { return s.Set("n", 42) }},
		{"write-4KiB", func(s *core.Session) error { return s.Set("blob", blob4K) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := sessiontest.NewManager(b, core.Config{})
			e := echo.New()
			e.Use(echosession.Middleware(m))
			e.GET("/login", func(c *echo.Context) error {
				if err := echosession.Get(c).Set("user", "ann"); err != nil {
					return err
				}
				return ok(c)
			})
			e.GET("/", func(c *echo.Context) error {
				if err := bc.fn(echosession.Get(c)); err != nil {
					return err
				}
				return ok(c)
			})
			serve(b, e, login(b, e))
		})
	}
}

// login runs one request through /login and returns its Set-Cookie value.
func login(b *testing.B, h http.Handler) string {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/login", nil)
	h.ServeHTTP(w, req)
	ck, err := http.ParseSetCookie(w.h.Get("Set-Cookie"))
	if err != nil || w.code != http.StatusOK {
		b.Fatalf("login: %d %v", w.code, err)
	}
	return ck.Name + "=" + ck.Value
}

// serve measures GET / with the given Cookie header.
func serve(b *testing.B, h http.Handler, cookie string) {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	h.ServeHTTP(w, req)
	if w.code != http.StatusOK || (cookie != "" && w.h.Get("Set-Cookie") != "") {
		b.Fatalf("warm-up: status %d, Set-Cookie %q", w.code, w.h.Get("Set-Cookie"))
	}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
	if w.code != http.StatusOK {
		b.Fatalf("status %d", w.code)
	}
}
