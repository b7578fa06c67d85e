package ginsession_test

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
	"github.com/tandemsession/tandem/internal/sessiontest"
	"go.uber.org/goleak"
)

// The behaviours every front end shares are in the conformance suite
// (internal/sessiontest, run by TestConformance); these tests are Gin's own.

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

// newManager returns a manager with fresh random keys and the given limits,
// closed when the test ends.
func newManager(t testing.TB, limits core.Limits) *core.Manager {
	t.Helper()
	return sessiontest.NewManager(t, core.Config{Limits: limits})
}

func TestGetWithoutMiddleware(t *testing.T) {
	r := gin.New()
	r.GET("/", func(c *gin.Context) {
		if s := ginsession.Get(c); s != nil {
			t.Errorf("Get without the middleware = %v, want nil", s)
		}
		c.Status(http.StatusNoContent)
	})
	sessiontest.NewClient(t, sessiontest.NewServer(t, r)).Expect("GET", "/", 204, "")
}

// A handler that only sets the status with c.Status writes no header: gin
// writes it after the handlers, and the cookie goes out with it.
func TestStatusWithoutWriteGetsCookie(t *testing.T) {
	m := newManager(t, core.Limits{})
	r := gin.New()
	r.Use(ginsession.Middleware(m))
	r.POST("/created", func(c *gin.Context) {
		_ = ginsession.Get(c).Set("k", "v")
		c.Status(http.StatusCreated)
	})
	r.GET("/get", func(c *gin.Context) {
		v, _, _ := core.Get[string](ginsession.Get(c), "k")
		c.String(http.StatusOK, v)
	})
	c := sessiontest.NewClient(t, sessiontest.NewServer(t, r))
	if sessiontest.SessionCookie(c.Expect("POST", "/created", 201, "")) == nil {
		t.Fatal("no cookie when the handler only set the status")
	}
	c.Expect("GET", "/get", 200, "v")
}

// core.FromContext reaches the session through a *gin.Context only with
// the engine's ContextWithFallback; ginsession.Get always does.
func TestFromContextWithGinContext(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		m := newManager(t, core.Limits{})
		r := gin.New()
		r.ContextWithFallback = fallback
		r.Use(ginsession.Middleware(m))
		r.GET("/", func(c *gin.Context) {
			got := core.FromContext(c)
			if want := ginsession.Get(c); want == nil || (got == want) != fallback {
				t.Errorf("ContextWithFallback=%v: FromContext(c) = %p, Get(c) = %p", fallback, got, want)
			}
			c.Status(http.StatusNoContent)
		})
		sessiontest.NewClient(t, sessiontest.NewServer(t, r)).Expect("GET", "/", 204, "")
	}
}
