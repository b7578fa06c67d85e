package core

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A new session whose handler writes the body before setting a value still
// gets its cookie (with the header), and the value is stored at handler end.
func TestBodyWrittenBeforeSessionUse(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/late" {
			_, _ = w.Write([]byte("body first"))
			_ = s.Set("late", true)
			return
		}
		var v bool
		ok, _ := s.Get("late", &v)
		if !ok || !v {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	rec := c.do("/late")
	if setCookie(rec, "tandem") == nil {
		t.Fatal("no cookie for a new session whose body went first")
	}
	if rec := c.do("/"); rec.Code != http.StatusOK {
		t.Fatal("value set after the body was not stored under the cookie's ID")
	}
}

func TestLazyCookieOnlyForWrittenSessions(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.Cookie.Lazy = true })
	c, _ := sessionClient(t, m)
	if setCookie(c.do("/"), "tandem") != nil {
		t.Fatal("lazy: cookie sent for a session nobody wrote")
	}
	if setCookie(c.do("/set"), "tandem") == nil {
		t.Fatal("lazy: no cookie for a written session")
	}
}

func TestChangeAfterHeaderIsStored(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/init":
			_ = s.Set("a", 1)
		case "/after":
			w.WriteHeader(http.StatusAccepted)
			_ = s.Set("b", 2)
		default:
			_, _ = w.Write([]byte(strings.Join(s.Keys(), ",")))
		}
	})
	c.do("/init")
	c.do("/after")
	if got := c.do("/").Body.String(); got != "a,b" {
		t.Fatalf("keys %q", got)
	}
}

func TestNoSessionWithoutMiddleware(t *testing.T) {
	if FromContext(t.Context()) != nil {
		t.Fatal("session from nowhere")
	}
}

func TestFlushAndResponseController(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		_ = FromContext(r.Context()).Set("k", 1)
		if _, ok := w.(http.Flusher); !ok {
			t.Error("writer lost http.Flusher")
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
		_, _ = w.Write([]byte("x"))
	})
	rec := c.do("/")
	if !rec.Flushed || setCookie(rec, "tandem") == nil {
		t.Fatalf("flushed=%v cookie=%v", rec.Flushed, setCookie(rec, "tandem"))
	}
}

type hijackRecorder struct {
	*httptest.ResponseRecorder
	hijacked bool
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = true
	return nil, nil, nil
}

func TestHijackCommitsFirst(t *testing.T) {
	m, _ := newManager(t, nil)
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = FromContext(r.Context()).Set("k", 1)
		if _, _, err := http.NewResponseController(w).Hijack(); err != nil {
			t.Errorf("Hijack: %v", err)
		}
	}))
	rec := &hijackRecorder{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !rec.hijacked || m.Len() != 1 {
		t.Fatalf("hijacked=%v sessions=%d", rec.hijacked, m.Len())
	}
}

func TestInformationalHeaderDoesNotCommit(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		_ = FromContext(r.Context()).Set("k", 1) // still before the final header
		w.WriteHeader(http.StatusOK)
	})
	srv := httptest.NewServer(c.h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if len(res.Cookies()) != 1 {
		t.Fatal("cookie missing after 103 Early Hints")
	}
}

func TestOverLimitErrors(t *testing.T) {
	m, _ := newManager(t, func(c *Config) {
		c.Limits = Limits{MaxAttributes: 2, MaxValueSize: 16, MaxSessionSize: 30, MaxSessions: 1}
	})
	var errs []error
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		errs = []error{
			s.Set("big", strings.Repeat("x", 20)),
			s.Set("a", 1),
			s.Set("b", 2),
			s.Set("c", 3),
			s.Set("d", "0123456789abc"),
		}
	})
	c.do("/")
	want := []error{ErrValueTooLarge, nil, nil, ErrTooManyAttributes, ErrTooManyAttributes}
	for i := range want {
		if !errors.Is(errs[i], want[i]) {
			t.Fatalf("Set #%d: %v, want %v", i, errs[i], want[i])
		}
	}
	c.do("/") // a returning session: not evicted for a new one
	c2 := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		_ = s.Set("x", 1)
	})
	if rec := c2.do("/"); rec.Code != http.StatusServiceUnavailable || setCookie(rec, "tandem") != nil {
		t.Fatalf("node full: code %d", rec.Code)
	}
	c3 := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if err := s.Set("a", "0123456789abc"); err != nil {
			t.Error(err)
		}
		errs[0] = s.Set("b", "0123456789abc")
	})
	c3.cookie = c.cookie
	c3.do("/")
	if !errors.Is(errs[0], ErrSessionTooLarge) {
		t.Fatalf("session size: %v", errs[0])
	}
}

// A commit that breaks a limit when merged with a concurrent commit fails
// the request with the error handler's 500, and the handler's body is
// dropped.
func TestCommitOverLimitAnswers500(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxAttributes = 2 })
	var other *client
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/init":
			_ = s.Set("a", 1)
		case "/race":
			_ = s.Set("b", 2)
			other.do("/c") // another request commits "c" meanwhile
			_, _ = w.Write([]byte("handler body"))
		case "/c":
			_ = s.Set("c", 3)
		}
	})
	c.do("/init")
	o := *c
	other = &o
	rec := c.do("/race")
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "handler body") {
		t.Fatalf("code %d body %q", rec.Code, rec.Body.String())
	}
}

func TestCustomErrorHandler(t *testing.T) {
	m, _ := newManager(t, func(c *Config) {
		c.Limits.MaxSessions = 1
		c.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte(err.Error()))
		}
	})
	c, _ := sessionClient(t, m)
	c.do("/set")
	c.do("/") // a returning session: not evicted for a new one
	c2, _ := sessionClient(t, m)
	rec := c2.do("/set")
	if rec.Code != http.StatusTeapot || !strings.Contains(rec.Body.String(), "maximum number of sessions") {
		t.Fatalf("code %d body %q", rec.Code, rec.Body.String())
	}
}

// An anonymous client that never writes keeps one cookie: it is not sent a
// new one on every request.
func TestAnonymousClientKeepsItsCookie(t *testing.T) {
	m, _ := newManager(t, nil)
	c, _ := sessionClient(t, m)
	if setCookie(c.do("/"), "tandem") == nil {
		t.Fatal("no cookie for a new session")
	}
	first := c.cookie
	for range 3 {
		if ck := setCookie(c.do("/"), "tandem"); ck != nil {
			t.Fatalf("cookie re-sent to an anonymous client: %v", ck)
		}
	}
	// Its first write keeps the ID and replaces the unsaved cookie once.
	rec := c.do("/set")
	ck := setCookie(rec, "tandem")
	if ck == nil || ck.Value == first {
		t.Fatal("the stored session's cookie was not issued")
	}
	p, _, err := m.cookies.decode(ck.Value)
	fp, _, _ := m.cookies.decode(first)
	if err != nil || p.unsaved || p.id != fp.id {
		t.Fatalf("stored cookie %+v (first %+v)", p, fp)
	}
	if setCookie(c.do("/"), "tandem") != nil {
		t.Fatal("cookie re-sent after the session was stored")
	}
}
