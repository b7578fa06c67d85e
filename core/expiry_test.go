package core

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestIdleTimeout(t *testing.T) {
	m, clk := newManager(t, func(c *Config) { c.IdleTimeout = 10 * time.Minute; c.SweepInterval = time.Minute })
	c, isNew := sessionClient(t, m)
	c.do("/set")
	for range 5 { // reads keep it alive well past one idle timeout
		clk.Add(9 * time.Minute)
		c.do("/")
		if *isNew {
			t.Fatal("active session expired")
		}
	}
	if n := m.Sweep(); n != 0 {
		t.Fatalf("swept %d live sessions", n)
	}
	clk.Add(11 * time.Minute)
	c.do("/")
	if !*isNew {
		t.Fatal("idle session served")
	}
	if n := m.Sweep(); n != 1 || m.Len() != 0 {
		t.Fatalf("swept %d, left %d", n, m.Len())
	}
}

func TestAbsoluteLifetime(t *testing.T) {
	m, clk := newManager(t, func(c *Config) {
		c.IdleTimeout = time.Hour
		c.FirstVisitIdleTimeout = time.Hour
		c.Lifetime = 2 * time.Hour
	})
	c, isNew := sessionClient(t, m)
	c.do("/set")
	for range 3 {
		clk.Add(35 * time.Minute)
		c.do("/set")
		if *isNew {
			t.Fatal("expired before its lifetime")
		}
	}
	clk.Add(16 * time.Minute) // 2h01m after creation, 16m after the last request
	c.do("/")
	if !*isNew {
		t.Fatal("session outlived its absolute lifetime")
	}
}

// The sweep visits only the buckets that are due: sessions that are not
// expiring are not looked at.
func TestSweepCostFollowsExpiries(t *testing.T) {
	m, clk := newManager(t, func(c *Config) { c.IdleTimeout = time.Hour; c.SweepInterval = time.Second })
	mk := func(n int) {
		for i := range n {
			if err := m.Install(&Change{ID: newID(), Version: 1, Full: true, Set: []Attr{{Key: "i", Value: fmt.Append(nil, i)}},
				Created: clk.Now(), Accessed: clk.Now()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(100)
	clk.Add(30 * time.Minute)
	mk(10_000)
	clk.Add(31 * time.Minute) // the first 100 are due, the 10,000 are not
	visited := 0
	for i := range m.store.shards {
		sh := &m.store.shards[i]
		cur := m.now() / m.store.width
		for _, b := range sh.due {
			if b < cur {
				if set := sh.buckets[b]; set != nil {
					visited += set.len()
				}
			}
		}
	}
	if visited != 100 {
		t.Fatalf("a sweep would visit %d sessions, want the 100 due", visited)
	}
	if n := m.Sweep(); n != 100 || m.Len() != 10_000 {
		t.Fatalf("swept %d, left %d", n, m.Len())
	}
}

func TestSweeperRunsAndStops(t *testing.T) {
	m, err := NewManager(Config{Keys: []KeyPair{testKey}, SweepInterval: time.Millisecond, IdleTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := sessionClient(t, m)
	c.do("/set")
	deadline := time.Now().Add(10 * time.Second)
	for m.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if m.Len() != 0 {
		t.Fatal("sweeper never removed the expired session")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	_ = m.Close() // idempotent
}

func TestConfigValidation(t *testing.T) {
	short := KeyPair{Hash: make([]byte, 16), Block: make([]byte, 32)}
	badBlock := KeyPair{Hash: make([]byte, 32), Block: make([]byte, 20)}
	for name, cfg := range map[string]Config{
		"no keys":          {},
		"short hash key":   {Keys: []KeyPair{short}},
		"bad block key":    {Keys: []KeyPair{badBlock}},
		"negative idle":    {Keys: []KeyPair{testKey}, IdleTimeout: -1},
		"negative life":    {Keys: []KeyPair{testKey}, Lifetime: -time.Second},
		"negative limit":   {Keys: []KeyPair{testKey}, Limits: Limits{MaxSessions: -1}},
		"bad cookie name":  {Keys: []KeyPair{testKey}, Cookie: CookieConfig{Name: "a b"}},
		"none not secure":  {Keys: []KeyPair{testKey}, Cookie: CookieConfig{SameSite: http.SameSiteNoneMode}},
		"partitioned only": {Keys: []KeyPair{testKey}, Cookie: CookieConfig{Partitioned: true}},
	} {
		m, err := NewManager(cfg)
		if err == nil {
			m.Close()
			t.Errorf("%s: accepted", name)
		} else if !errorsIs(err, ErrInvalidConfig) {
			t.Errorf("%s: %v does not wrap ErrInvalidConfig", name, err)
		}
	}
}
