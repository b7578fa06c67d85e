package core

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

// sessionClient sets "k" on /set and reports IsNew on every request.
func sessionClient(t *testing.T, m *Manager) (*client, *bool) {
	isNew := new(bool)
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		*isNew = s.IsNew()
		if r.URL.Path == "/set" {
			_ = s.Set("k", "v")
		}
	})
	return c, isNew
}

func TestBadCookiesYieldFreshSession(t *testing.T) {
	m, _ := newManager(t, nil)
	c, isNew := sessionClient(t, m)
	c.do("/set")
	good := c.cookie
	other := securecookie.New(bytes.Repeat([]byte("x"), 32), bytes.Repeat([]byte("y"), 32)).SetSerializer(securecookie.NopEncoder{})
	foreign, err := other.Encode("tandem", payload{id: newID()}.marshal())
	if err != nil {
		t.Fatal(err)
	}
	wrongName, _ := m.cookies.codecs[0].Encode("other", payload{id: newID()}.marshal())
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1
	garbage, _ := m.cookies.codecs[0].Encode("tandem", []byte("\x01\x05short"))
	for name, v := range map[string]string{
		"tampered":     string(flipped),
		"truncated":    good[:len(good)-5],
		"foreign key":  foreign,
		"other name":   wrongName,
		"empty":        "",
		"huge":         strings.Repeat("A", 5000),
		"bad payload":  garbage,
		"not base64":   "%%%%",
		"quoted empty": `""`,
	} {
		t.Run(name, func(t *testing.T) {
			cc := *c
			cc.cookie = v
			rec := cc.do("/")
			if rec.Code != http.StatusOK || !*isNew {
				t.Fatalf("code %d new %v", rec.Code, *isNew)
			}
		})
	}
	c.cookie = good
	c.do("/")
	if *isNew {
		t.Fatal("good cookie no longer loads")
	}
}

func TestExpiredCookieYieldsFreshSession(t *testing.T) {
	m, clk := newManager(t, func(c *Config) { c.IdleTimeout = time.Minute })
	c, isNew := sessionClient(t, m)
	c.do("/set")
	clk.Add(2 * time.Minute)
	c.do("/")
	if !*isNew {
		t.Fatal("expired session served")
	}
}

func TestKeyRotation(t *testing.T) {
	old := KeyPair{Hash: bytes.Repeat([]byte("o"), 32), Block: bytes.Repeat([]byte("p"), 16)}
	m1, _ := newManager(t, func(c *Config) { c.Keys = []KeyPair{old} })
	c, _ := sessionClient(t, m1)
	c.do("/set")
	// The same store served by a manager whose primary key is new.
	m2, _ := newManager(t, func(c *Config) { c.Keys = []KeyPair{testKey, old} })
	m2.store = m1.store
	oldCookie := c.cookie
	c, isNew := sessionClient(t, m2)
	c.cookie = oldCookie
	rec := c.do("/")
	if *isNew {
		t.Fatal("cookie under the old key did not load")
	}
	ck := setCookie(rec, "tandem")
	if ck == nil || ck.Value == oldCookie {
		t.Fatal("cookie not re-issued under the new key")
	}
	var b []byte
	if err := m2.cookies.codecs[0].Decode("tandem", ck.Value, &b); err != nil {
		t.Fatalf("re-issued cookie not under the new key: %v", err)
	}
	if rec := c.do("/"); setCookie(rec, "tandem") != nil {
		t.Fatalf("cookie re-issued again: %v (new=%v)", setCookie(rec, "tandem"), *isNew)
	}
}

func TestCookieOptions(t *testing.T) {
	m, _ := newManager(t, func(c *Config) {
		c.Cookie = CookieConfig{Name: "sid", Path: "/app", Domain: "example.test", Secure: true,
			DisableHTTPOnly: true, SameSite: http.SameSiteStrictMode, Partitioned: true, Persist: true}
		c.Lifetime = time.Hour
	})
	c, _ := sessionClient(t, m)
	rec := c.do("/set")
	ck := setCookie(rec, "sid")
	if ck == nil || ck.Path != "/app" || ck.Domain != "example.test" || !ck.Secure || ck.HttpOnly ||
		ck.SameSite != http.SameSiteStrictMode || !ck.Partitioned || ck.MaxAge != 3600 {
		t.Fatalf("cookie = %+v", ck)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	p := payload{id: newID(), owner: "node-a", backup: "node-b"}
	got, err := unmarshalPayload(p.marshal())
	if err != nil || got != p {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0}, {2}, {1, 200}, append(p.marshal(), 0)} {
		if _, err := unmarshalPayload(bad); err == nil {
			t.Fatalf("accepted %x", bad)
		}
	}
}

func TestIDsAreRandomAndWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		if !validID(id) || seen[id] {
			t.Fatalf("bad or repeated ID %q", id)
		}
		seen[id] = true
	}
}

// FuzzCookie feeds arbitrary cookie values to the decoder and arbitrary bytes
// to the payload parser: they must fail cleanly, never panic.
func FuzzCookie(f *testing.F) {
	m, _ := newManager(f, nil)
	good, _ := m.cookies.encode(payload{id: newID(), owner: "a", backup: "b"})
	f.Add(good, []byte(payload{id: newID()}.marshal()))
	f.Add(good[:10], []byte{1, 2, 3})
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, value string, raw []byte) {
		if p, _, err := m.cookies.decode(value); err == nil && !validID(p.id) {
			t.Fatalf("decoded invalid ID %q", p.id)
		}
		if p, err := unmarshalPayload(raw); err == nil {
			if !validID(p.id) || !bytes.Equal(p.marshal(), raw) {
				t.Fatalf("payload %x parsed to %+v", raw, p)
			}
		}
	})
}

func TestRouteCookieFollowsOwner(t *testing.T) {
	rep := &fakeReplicator{loc: Route{Owner: "n1", Backup: "n2"}}
	m, _ := newManager(t, func(c *Config) { c.Replicator = rep; c.Cookie.RouteName = "tandem_node" })
	c, _ := sessionClient(t, m)
	rec := c.do("/set")
	if ck := setCookie(rec, "tandem_node"); ck == nil || ck.Value != "n1" || !ck.HttpOnly {
		t.Fatalf("route cookie %+v", ck)
	}
	if setCookie(c.do("/"), "tandem_node") != nil {
		t.Fatal("route cookie re-sent without a change")
	}
	rep.mu.Lock()
	rep.loc.Owner = "n3" // the session moved
	rep.mu.Unlock()
	if ck := setCookie(c.do("/"), "tandem_node"); ck == nil || ck.Value != "n3" {
		t.Fatalf("route cookie after move %+v", ck)
	}
}
