package ginsession_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
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

var (
	blob4K    = strings.Repeat("x", 4096)
	blob4KRaw = []byte(blob4K)
)

// BenchmarkGin compares, in one run, a bare gin handler with the same
// handler behind ginsession: a request that only reads an existing session,
// one that writes a small attribute, and one that writes a 4 KiB attribute.
func BenchmarkGin(b *testing.B) {
	ok := func(c *gin.Context) { c.String(http.StatusOK, "ok") }
	b.Run("bare", func(b *testing.B) {
		r := gin.New()
		r.GET("/", ok)
		serve(b, r, "")
	})
	for _, bc := range []struct {
		name string
		fn   func(s *core.Session) error
	}{
		{"read", func(s *core.Session) error {
			_, _, err := core.Get[string](s, "user")
			return err
		}},
		{"read-int", func(s *core.Session) error {
			_, _, err := core.Get[int](s, "n")
			return err
		}},
		{"write-small", func(s *core.Session) error { return s.Set("n", 42) }},
		{"incr", func(s *core.Session) error {
			n, _, err := core.Get[int](s, "n")
			if err != nil {
				return err
			}
			return s.Set("n", n+1)
		}},
		{"write-4KiB", func(s *core.Session) error { return s.Set("blob", blob4K) }},
		{"write-4KiB-raw", func(s *core.Session) error { return s.SetRaw("blob", blob4KRaw) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := newManager(b, core.Limits{})
			r := gin.New()
			r.Use(ginsession.Middleware(m))
			r.GET("/login", func(c *gin.Context) {
				_ = ginsession.Get(c).Set("user", "ann")
				_ = ginsession.Get(c).Set("n", 1)
				ok(c)
			})
			r.GET("/", func(c *gin.Context) {
				if err := bc.fn(ginsession.Get(c)); err != nil {
					c.String(http.StatusInternalServerError, err.Error())
					return
				}
				ok(c)
			})
			serve(b, r, login(b, r))
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
