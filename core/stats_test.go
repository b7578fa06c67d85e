package core

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// Stats.Commits counts each request whose changes were stored, once: a
// new session, a change, a regeneration, a logout; not a read, not an
// empty new session, not a value refused for its size.
func TestStatsCommits(t *testing.T) {
	m, _ := newManager(t, func(c *Config) { c.Limits.MaxSessionSize = 64 })
	var setErr error
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			_ = s.Set("k", r.URL.Query().Get("v"))
			_ = s.Set("j", "x")
		case "/big": // a value the session cannot hold: Set refuses it
			setErr = s.Set("a", strings.Repeat("a", 80))
		case "/login":
			s.Regenerate()
		case "/logout":
			s.Invalidate()
		}
	})
	steps := []struct {
		path string
		want uint64 // Commits after the request
	}{
		{"/", 0},        // an empty new session is not stored
		{"/set?v=1", 1}, // created
		{"/", 1},        // a read
		{"/set?v=2", 2}, // changed
		{"/set?v=2", 3}, // the same values set again: still a stored change
		{"/big", 3},     // refused: too large
		{"/login", 4},   // regenerated
		{"/logout", 5},  // ended
		{"/logout", 5},  // no session left to end
		{"/", 5},        // a fresh, empty session again
	}
	for _, st := range steps {
		c.do(st.path)
		if got := m.Stats().Commits; got != st.want {
			t.Fatalf("after %s: Commits = %d, want %d", st.path, got, st.want)
		}
	}
	if !errors.Is(setErr, ErrSessionTooLarge) {
		t.Fatalf("/big: Set: %v, want ErrSessionTooLarge", setErr)
	}
}
