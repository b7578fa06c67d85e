package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tandemsession/tandem/core"
)

// exampleKeys are the cookie keys of the examples.
var exampleKeys = []core.KeyPair{{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}}

// do sends one request through h with cookie (nil for none) and returns
// the session cookie the response sets, or cookie.
func do(h http.Handler, method, path string, cookie *http.Cookie) *http.Cookie {
	req := httptest.NewRequest(method, path, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "tandem" {
			return c
		}
	}
	return cookie
}

// Hooks report a session's life: here a login (a regeneration after the
// first write) and a logout.
func ExampleEvents() {
	m, _ := core.NewManager(core.Config{
		Keys: exampleKeys,
		Events: core.Events{
			OnCreated:     func(_ context.Context, e core.Event) { fmt.Println("created") },
			OnRegenerated: func(_ context.Context, e core.Event) { fmt.Println("regenerated, user", e.User) },
			OnInvalidated: func(_ context.Context, e core.Event) { fmt.Println("invalidated:", e.Reason) },
		},
	})
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		switch r.URL.Path {
		case "/cart":
			_ = s.Set("cart", "tea")
		case "/login":
			s.Regenerate()
			_ = s.SetUser(r.Context(), "u42")
		case "/logout":
			s.Invalidate()
		}
	}))
	c := do(h, http.MethodPost, "/cart", nil)
	c = do(h, http.MethodPost, "/login", c)
	do(h, http.MethodPost, "/logout", c)
	// Output:
	// created
	// regenerated, user u42
	// invalidated: logout
}

// A user's sessions: listed, limited, and ended everywhere. In a cluster
// (Config.Replicator a *buddy.Node) the same calls reach every node.
func ExampleManager_UserSessions() {
	m, _ := core.NewManager(core.Config{
		Keys:   exampleKeys,
		Limits: core.Limits{MaxSessionsPerUser: 2}, // LimitReject: a third login fails
	})
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Regenerate()
		if err := s.SetUser(r.Context(), "u42"); errors.Is(err, core.ErrTooManySessions) {
			fmt.Println("login refused:", err)
		}
	}))
	for range 3 { // three browsers log in
		do(h, http.MethodPost, "/login", nil)
	}
	ctx := context.Background()
	list, err := m.UserSessions(ctx, "u42")
	fmt.Println(len(list), "sessions, all nodes answered:", err == nil)
	n, _ := m.InvalidateUser(ctx, "u42")
	fmt.Println(n, "logged out")
	// Output:
	// login refused: tandem: user holds the maximum number of sessions: "u42" holds 2 sessions, limit 2
	// 2 sessions, all nodes answered: true
	// 2 logged out
}

// A request sent with the old cookie while the login's response was on
// its way still finds the logged-in session, for Config.RegenerateGrace.
func ExampleConfig_regenerateGrace() {
	m, _ := core.NewManager(core.Config{Keys: exampleKeys}) // RegenerateGrace: 10 s
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		switch r.URL.Path {
		case "/cart":
			_ = s.Set("cart", "tea")
		case "/login":
			s.Regenerate()
			_ = s.SetUser(r.Context(), "u42")
		default:
			fmt.Printf("user %q\n", s.User())
		}
	}))
	before := do(h, http.MethodPost, "/cart", nil)
	do(h, http.MethodPost, "/login", before)
	do(h, http.MethodGet, "/whoami", before) // a parallel XHR with the old cookie
	// Output:
	// user "u42"
}
