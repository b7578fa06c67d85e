package core

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestEnvoyCookieValue(t *testing.T) {
	for _, c := range []struct {
		addr   string
		format EnvoyFormat
		want   string
	}{
		// The example of Envoy's documentation of the cookie extension.
		{"1.2.3.4:80", EnvoyPlain, "MS4yLjMuNDo4MA=="},
		// 0x0a (field 1, length-delimited), 13, "10.0.0.1:8080".
		{"10.0.0.1:8080", EnvoyProto, "Cg0xMC4wLjAuMTo4MDgw"},
		{"[fd00::1]:8080", EnvoyProto, "Cg5bZmQwMDo6MV06ODA4MA=="},
	} {
		if got := EnvoyCookieValue(c.addr, c.format); got != c.want {
			t.Errorf("EnvoyCookieValue(%q, %v) = %q, want %q", c.addr, c.format, got, c.want)
		}
	}
	// Every address reads back as itself the way Envoy reads the cookie,
	// in the protobuf format; a long one needs a two-byte length.
	long := strings.Repeat("a", 200) + ".example:8080"
	for _, addr := range []string{"127.0.0.1:8080", "10.0.0.1:8080", "[fd00::1]:443", long} {
		v := EnvoyCookieValue(addr, EnvoyProto)
		if got, ok := envoyAddress(v); !ok || got != addr {
			t.Errorf("%q: Envoy would read %q, %v", addr, got, ok)
		}
		if !validCookieValue(v) {
			t.Errorf("%q: %q is not a valid cookie value", addr, v)
		}
	}
	// The plain format works for some addresses only: 10.0.0.1:8080 parses
	// as a protobuf message of unknown fields, and Envoy then finds no
	// address in it.
	if got, ok := envoyAddress(EnvoyCookieValue("127.0.0.1:8080", EnvoyPlain)); !ok || got != "127.0.0.1:8080" {
		t.Errorf("plain 127.0.0.1:8080 reads as %q, %v", got, ok)
	}
	if got, ok := envoyAddress(EnvoyCookieValue("10.0.0.1:8080", EnvoyPlain)); ok {
		t.Errorf("plain 10.0.0.1:8080 reads as %q; the pitfall EnvoyPlain's doc describes is gone", got)
	}
}

// envoyAddress reads a cookie value as recent Envoy does
// (CookieBasedSessionStateFactory::parseAddress): the base64 is decoded,
// parsed as the protobuf message envoy.Cookie{string address = 1; uint64
// expires = 2}; if that parses, its address is used (none when empty),
// otherwise the decoded bytes themselves.
func envoyAddress(value string) (string, bool) {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return "", false
	}
	if addr, ok := parseEnvoyCookie(raw); ok {
		return addr, addr != ""
	}
	return string(raw), len(raw) > 0
}

// parseEnvoyCookie is a protobuf decoder for envoy.Cookie: it accepts any
// well-formed message, skipping unknown fields, as protobuf's
// ParseFromString does.
func parseEnvoyCookie(b []byte) (addr string, ok bool) {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 || tag>>3 == 0 {
			return "", false
		}
		b = b[n:]
		switch tag & 7 {
		case 0: // varint
			if _, n = binary.Uvarint(b); n <= 0 {
				return "", false
			}
			b = b[n:]
		case 1: // fixed64
			if len(b) < 8 {
				return "", false
			}
			b = b[8:]
		case 2: // length-delimited
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return "", false
			}
			if tag>>3 == 1 {
				addr = string(b[n : n+int(l)])
			}
			b = b[n+int(l):]
		case 5: // fixed32
			if len(b) < 4 {
				return "", false
			}
			b = b[4:]
		default:
			return "", false
		}
	}
	return addr, true
}

// validCookieValue: RFC 6265's cookie-octets, the bytes net/http keeps.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

func TestEnvoyRouteErrors(t *testing.T) {
	for _, bad := range []map[string]string{
		{"n1": "10.0.0.1"},        // no port
		{"n1": ":8080"},           // no host
		{"n1": "10.0.0.1:http"},   // port not numeric
		{"n1": "10.0.0.1:70000"},  // port out of range
		{"n1": "fd00::1:8080"},    // IPv6 without brackets
		{"n1": "10.0.0.1:8080 x"}, // junk
		{"n1": "10.0.0.1:8080", "n2": ""},
	} {
		if _, err := EnvoyRoute(bad, EnvoyProto); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("EnvoyRoute(%v): %v, want ErrInvalidConfig", bad, err)
		}
	}
	if _, err := EnvoyRoute(nil, EnvoyFormat(7)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown format: %v", err)
	}
	_, err := NewManager(Config{Keys: []KeyPair{testKey}, Cookie: CookieConfig{RouteValue: func(string) string { return "x" }}})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "RouteName") {
		t.Errorf("RouteValue without RouteName: %v", err)
	}
}

// With EnvoyRoute, the route cookie carries the owner's upstream address
// in Envoy's format, follows the owner when the session moves, and is
// deleted when the new owner has no known address.
func TestRouteCookieEnvoyValue(t *testing.T) {
	upstreams := map[string]string{"n1": "10.0.0.1:8080", "n3": "10.0.0.3:8080"}
	route, err := EnvoyRoute(upstreams, EnvoyProto)
	if err != nil {
		t.Fatal(err)
	}
	upstreams["n1"] = "changed after the call" // EnvoyRoute copied the map
	rep := &fakeReplicator{loc: Route{Owner: "n1", Backup: "n2"}}
	m, _ := newManager(t, func(c *Config) {
		c.Replicator = rep
		c.Cookie.RouteName = "tandem_node"
		c.Cookie.RouteValue = route
	})
	c, _ := sessionClient(t, m)
	ck := setCookie(c.do("/set"), "tandem_node")
	if ck == nil || ck.Value != EnvoyCookieValue("10.0.0.1:8080", EnvoyProto) || ck.MaxAge < 0 {
		t.Fatalf("route cookie %+v", ck)
	}
	if addr, ok := envoyAddress(ck.Value); !ok || addr != "10.0.0.1:8080" {
		t.Fatalf("Envoy reads %q, %v", addr, ok)
	}
	move := func(owner string) {
		rep.mu.Lock()
		rep.loc.Owner = owner
		rep.mu.Unlock()
	}
	move("n3")
	if ck := setCookie(c.do("/"), "tandem_node"); ck == nil || ck.Value != EnvoyCookieValue("10.0.0.3:8080", EnvoyProto) {
		t.Fatalf("route cookie after the move to n3: %+v", ck)
	}
	move("n9") // no known address: no route, Envoy load-balances
	if ck := setCookie(c.do("/"), "tandem_node"); ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("route cookie for an owner without an address: %+v, want a deletion", ck)
	}
	// The session cookie still names n9 as the owner.
	if ck := setCookie(c.do("/"), "tandem_node"); ck != nil {
		t.Fatalf("route cookie sent again without a change: %+v", ck)
	}
}
