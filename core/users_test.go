package core

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"
)

// userApp binds the session to ?u= at /login (after Regenerate), and
// answers with the user and the error of SetUser.
func userApp(w http.ResponseWriter, r *http.Request) {
	s := FromContext(r.Context())
	switch r.URL.Path {
	case "/login":
		s.Regenerate()
		if err := s.SetUser(r.Context(), r.URL.Query().Get("u")); err != nil {
			w.Header().Set("X-Err", err.Error())
			if errors.Is(err, ErrTooManySessions) {
				w.WriteHeader(http.StatusConflict)
			}
			return
		}
		_ = s.Set("k", "v")
	case "/logout":
		s.Invalidate()
	}
	w.Header().Set("X-User", s.User())
}

func TestUserSessionsLocal(t *testing.T) {
	var log eventLog
	m, clk := newManager(t, func(c *Config) { c.Events = log.hooks() })
	var cs []*client
	for range 3 {
		c := newClient(t, m, userApp)
		c.do("/login?u=u42")
		clk.Add(time.Second)
		cs = append(cs, c)
	}
	other := newClient(t, m, userApp)
	other.do("/login?u=u7")
	if rec := cs[0].do("/"); rec.Header().Get("X-User") != "u42" {
		t.Fatalf("User() = %q", rec.Header().Get("X-User"))
	}
	list, err := m.UserSessions(t.Context(), "u42")
	if err != nil || len(list) != 3 {
		t.Fatalf("UserSessions: %d, %v", len(list), err)
	}
	if !list[0].Created.Before(list[1].Created) {
		t.Fatal("not oldest first")
	}
	cs[1].do("/logout")
	if list, _ = m.UserSessions(t.Context(), "u42"); len(list) != 2 {
		t.Fatalf("after a logout: %d sessions", len(list))
	}
	log.take()
	n, err := m.InvalidateUser(t.Context(), "u42")
	if err != nil || n != 2 {
		t.Fatalf("InvalidateUser: %d, %v", n, err)
	}
	if got, _ := log.take(); !slices.Equal(got, []string{"invalidated user", "invalidated user"}) {
		t.Fatalf("events %q", got)
	}
	if rec := cs[0].do("/"); rec.Header().Get("X-User") != "" {
		t.Fatal("session still bound after InvalidateUser")
	}
	if list, _ = m.UserSessions(t.Context(), "u7"); len(list) != 1 || m.Len() != 1 {
		t.Fatalf("another user's sessions: %d, node holds %d", len(list), m.Len())
	}
	if _, err := m.UserSessions(t.Context(), ""); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("empty user: %v", err)
	}
}

func TestMaxSessionsPerUser(t *testing.T) {
	for _, policy := range []UserLimitPolicy{LimitReject, LimitEndOldest} {
		var log eventLog
		m, clk := newManager(t, func(c *Config) {
			c.Events = log.hooks()
			c.Limits.MaxSessionsPerUser = 2
			c.Limits.UserLimit = policy
		})
		var cs []*client
		for range 2 {
			c := newClient(t, m, userApp)
			if rec := c.do("/login?u=u42"); rec.Code != http.StatusOK {
				t.Fatalf("login: %d", rec.Code)
			}
			clk.Add(time.Second)
			cs = append(cs, c)
		}
		// Logging in again with one of them is no new session.
		if rec := cs[1].do("/login?u=u42"); rec.Code != http.StatusOK {
			t.Fatalf("re-login: %d %s", rec.Code, rec.Header().Get("X-Err"))
		}
		log.take()
		third := newClient(t, m, userApp)
		rec := third.do("/login?u=u42")
		list, _ := m.UserSessions(t.Context(), "u42")
		switch policy {
		case LimitReject:
			if rec.Code != http.StatusConflict || len(list) != 2 {
				t.Fatalf("reject: status %d, %d sessions", rec.Code, len(list))
			}
		case LimitEndOldest:
			if rec.Code != http.StatusOK || len(list) != 2 {
				t.Fatalf("end oldest: status %d, %d sessions", rec.Code, len(list))
			}
			if r := cs[0].do("/"); r.Header().Get("X-User") != "" {
				t.Fatal("the oldest session survived")
			}
			if r := cs[1].do("/"); r.Header().Get("X-User") != "u42" {
				t.Fatal("the newer session was ended")
			}
			if got, _ := log.take(); !slices.Contains(got, "invalidated limit") {
				t.Fatalf("events %q", got)
			}
		}
	}
}

// The binding survives Regenerate, is hidden from Keys, and unbinds.
func TestSetUserBinding(t *testing.T) {
	m, _ := newManager(t, nil)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/bind":
			_ = s.SetUser(r.Context(), "u1")
		case "/regen":
			s.Regenerate()
		case "/unbind":
			_ = s.SetUser(r.Context(), "")
		}
		if len(s.Keys()) != 0 {
			t.Errorf("Keys lists %q", s.Keys())
		}
		w.Header().Set("X-User", s.User())
	})
	c.do("/bind")
	if rec := c.do("/regen"); rec.Header().Get("X-User") != "u1" {
		t.Fatal("binding lost at Regenerate")
	}
	if l, _ := m.UserSessions(t.Context(), "u1"); len(l) != 1 {
		t.Fatalf("%d sessions after Regenerate", len(l))
	}
	c.do("/unbind")
	if l, _ := m.UserSessions(t.Context(), "u1"); len(l) != 0 {
		t.Fatalf("%d sessions after unbinding", len(l))
	}
}
