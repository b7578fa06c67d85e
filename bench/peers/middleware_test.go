// Package peers compares the per-request cost of Tandem's Gin middleware with
// the session libraries Gin applications use today, in one benchmark run on
// one machine. It is its own module so that the library's go.mod stays lean.
package peers

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/gin-contrib/sessions"
	"github.com/gin-contrib/sessions/cookie"
	"github.com/gin-gonic/gin"
	"github.com/gorilla/securecookie"
	gsessions "github.com/gorilla/sessions"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
)

// blob4K is the value of the 4 KiB write.
var blob4K = strings.Repeat("x", 4096)

// op is what the measured handler does with the session: read one small
// attribute, write one small attribute, or write 4 KiB.
type op int

const (
	opRead op = iota
	opWriteSmall
	opWrite4K
)

var ops = []struct {
	name string
	op   op
}{{"read", opRead}, {"write-small", opWriteSmall}, {"write-4KiB", opWrite4K}}

// peer builds a handler (the gin engine plus the session library) whose
// GET /login stores user=ann and whose GET / performs o. cookie is the name
// of the library's session cookie.
type peer struct {
	name   string
	cookie string
	build  func(b *testing.B, o op) http.Handler
}

var peers = []peer{
	{"tandem", "tandem", buildTandem},
	{"gin-contrib-cookie", "gcs", buildGinContribCookie},
	{"scs-memstore", "session", buildSCS},
}

// BenchmarkMiddleware runs every variant in one run: a bare gin handler,
// then each session library reading, writing a small value and writing
// 4 KiB, every request carrying the cookie of an existing session.
func BenchmarkMiddleware(b *testing.B) {
	gin.SetMode(gin.ReleaseMode)
	b.Run("bare", func(b *testing.B) {
		r := gin.New()
		r.GET("/", ok)
		serve(b, r, "", "")
	})
	for _, p := range peers {
		for _, o := range ops {
			b.Run(p.name+"/"+o.name, func(b *testing.B) {
				h := p.build(b, o.op)
				serve(b, h, p.cookie, login(b, h, p.cookie))
			})
		}
	}
}

func ok(c *gin.Context) { c.String(http.StatusOK, "ok") }

func fail(c *gin.Context, err error) { c.String(http.StatusInternalServerError, err.Error()) }

// checkUser makes sure a read found the session stored at login, so that a
// read that silently starts a new session is not measured as a read.
func checkUser(user string, found bool, err error) error {
	switch {
	case err != nil:
		return err
	case !found || user != "ann":
		return fmt.Errorf("read user %q (found %v), want ann", user, found)
	}
	return nil
}

func key(n int) []byte {
	k := make([]byte, n)
	_, _ = rand.Read(k)
	return k
}

func buildTandem(b *testing.B, o op) http.Handler {
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{{Hash: key(32), Block: key(32)}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	r := gin.New()
	r.Use(ginsession.Middleware(m))
	r.GET("/login", func(c *gin.Context) {
		if err := ginsession.Get(c).Set("user", "ann"); err != nil {
			fail(c, err)
			return
		}
		ok(c)
	})
	r.GET("/", func(c *gin.Context) {
		s := ginsession.Get(c)
		var err error
		switch o {
		case opRead:
			err = checkUser(core.Get[string](s, "user"))
		case opWriteSmall:
			err = s.Set("n", 42)
		case opWrite4K:
			err = s.Set("blob", blob4K)
		}
		if err != nil {
			fail(c, err)
			return
		}
		ok(c)
	})
	return r
}

func buildGinContribCookie(b *testing.B, o op) http.Handler {
	store := cookie.NewStore(key(32), key(32))
	// A 4 KiB value makes a cookie larger than the 4096 bytes securecookie
	// (and browsers) accept, and Save fails. Raise the codec's limit, which
	// gin-contrib does not expose, so the cost can be measured at all; a
	// browser would drop that cookie.
	cs := reflect.ValueOf(store).Elem().FieldByName("CookieStore").Interface().(*gsessions.CookieStore)
	for _, c := range cs.Codecs {
		c.(*securecookie.SecureCookie).MaxLength(16 << 10)
	}
	r := gin.New()
	r.Use(sessions.Sessions("gcs", store))
	r.GET("/login", func(c *gin.Context) {
		s := sessions.Default(c)
		s.Set("user", "ann")
		if err := s.Save(); err != nil {
			fail(c, err)
			return
		}
		ok(c)
	})
	r.GET("/", func(c *gin.Context) {
		s := sessions.Default(c)
		switch o {
		case opRead:
			user, found := s.Get("user").(string)
			if err := checkUser(user, found, nil); err != nil {
				fail(c, err)
				return
			}
		case opWriteSmall:
			s.Set("n", 42)
		case opWrite4K:
			s.Set("blob", blob4K)
		}
		if o != opRead {
			if err := s.Save(); err != nil {
				fail(c, err)
				return
			}
		}
		ok(c)
	})
	return r
}

func buildSCS(b *testing.B, o op) http.Handler {
	st := memstore.New()
	b.Cleanup(st.StopCleanup)
	sm := scs.New()
	sm.Store = st
	r := gin.New()
	r.GET("/login", func(c *gin.Context) {
		sm.Put(c.Request.Context(), "user", "ann")
		ok(c)
	})
	r.GET("/", func(c *gin.Context) {
		ctx := c.Request.Context()
		switch o {
		case opRead:
			user := sm.GetString(ctx, "user")
			if err := checkUser(user, user != "", nil); err != nil {
				fail(c, err)
				return
			}
		case opWriteSmall:
			sm.Put(ctx, "n", 42)
		case opWrite4K:
			sm.Put(ctx, "blob", blob4K)
		}
		ok(c)
	})
	// scs's own net/http middleware around the engine, as scs users do.
	return sm.LoadAndSave(r)
}

// discardWriter is the cheapest http.ResponseWriter: it keeps the header map
// (cleared between requests) and throws the body away.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) reset()                      { clear(w.h); w.code = 0 }

// setCookie returns the value a response sets for the named cookie.
func setCookie(h http.Header, name string) (string, bool) {
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

// login runs GET /login and returns the session cookie it set.
func login(b *testing.B, h http.Handler, name string) string {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/login", nil)
	h.ServeHTTP(w, req)
	v, ok := setCookie(w.h, name)
	if !ok || w.code != http.StatusOK {
		b.Fatalf("login: status %d, no %s cookie in %v", w.code, name, w.h)
	}
	return v
}

// newRequest returns GET / carrying the named cookie ("" for none).
func newRequest(name, value string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	if name != "" {
		req.Header.Set("Cookie", name+"="+value)
	}
	return req
}

// serve measures GET / carrying the named cookie. Two warm-up requests
// first adopt any cookie the response sets, as a browser would, so the
// measured requests carry the steady-state cookie (for a cookie store, one
// that holds the written value).
func serve(b *testing.B, h http.Handler, name, value string) {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	for range 2 {
		w.reset()
		h.ServeHTTP(w, newRequest(name, value))
		if w.code != http.StatusOK {
			b.Fatalf("warm-up: status %d", w.code)
		}
		if v, ok := setCookie(w.h, name); ok {
			value = v
		}
	}
	// Some libraries stash state in the request they are handed (gorilla
	// sessions replaces *r with a copy carrying its registry): restore the
	// request before each iteration, so that every one starts from the wire.
	req := newRequest(name, value)
	saved := *req
	b.ReportAllocs()
	for b.Loop() {
		*req = saved
		w.reset()
		h.ServeHTTP(w, req)
	}
	if w.code != http.StatusOK {
		b.Fatalf("status %d", w.code)
	}
}
