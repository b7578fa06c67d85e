package buddy

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// envoyCookie is the name of the route cookie in the Envoy tests, as an
// Envoy stateful-session filter would name its cookie.
const envoyCookie = "envoy_session"

// envoyUpstreams are the addresses at which Envoy would know the nodes'
// applications (pod IPs and the container port).
var envoyUpstreams = map[string]string{"n1": "10.0.0.1:8080", "n2": "10.0.0.2:8080", "n3": "[fd00::3]:8080"}

// envoyAddress reads a route cookie's value as Envoy does: base64, then
// the protobuf message envoy.Cookie{string address = 1} (EnvoyProto) or
// the host:port itself (EnvoyPlain).
func envoyAddress(value string, format core.EnvoyFormat) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return "", fmt.Errorf("route cookie %q: %w", value, err)
	}
	if format == core.EnvoyPlain {
		return string(raw), nil
	}
	if len(raw) < 2 || raw[0] != 0x0a { // field 1, length-delimited
		return "", fmt.Errorf("route cookie %q: not an envoy.Cookie message", value)
	}
	n, k := binary.Uvarint(raw[1:])
	if k <= 0 || uint64(len(raw)-1-k) != n {
		return "", fmt.Errorf("route cookie %q: bad address length", value)
	}
	return string(raw[1+k:]), nil
}

// envoyRoute does one request of b through m and returns the value of the
// route cookie the response sets, and whether it sets one.
func envoyRoute(b *browser, m *member, path string) (code int, route string, set bool) {
	b.t.Helper()
	rec := b.do(m, path)
	for _, c := range rec.Result().Cookies() {
		if c.Name == envoyCookie {
			if c.MaxAge < 0 {
				return rec.Code, "", true
			}
			return rec.Code, c.Value, true
		}
	}
	return rec.Code, "", false
}

// With the Envoy route cookie, each session's cookie names its owner's
// upstream address, as Envoy's stateful-session filter reads it; once
// the owner is killed, the survivor that serves the session names itself,
// and the session's data survived. The cookie follows the session when
// another node takes it (a request that reached a non-owner).
func TestEnvoyRouteCookieFailover(t *testing.T) {
	for _, format := range []core.EnvoyFormat{core.EnvoyProto, core.EnvoyPlain} {
		t.Run(format.String(), func(t *testing.T) { testEnvoyRouteFailover(t, format) })
	}
}

func testEnvoyRouteFailover(t *testing.T, format core.EnvoyFormat) {
	route, err := core.EnvoyRoute(envoyUpstreams, format)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := coreCluster(t, 3, fastTimers, func(_ int, c *core.Config) {
		c.Cookie.RouteName = envoyCookie
		c.Cookie.RouteValue = route
	})
	// names fails unless the route cookie value names node's upstream.
	names := func(what, value string, node *member) {
		t.Helper()
		want := envoyUpstreams[node.node.ID()]
		got, err := envoyAddress(value, format)
		if err != nil || got != want {
			t.Fatalf("%s: the route cookie names %q (%v), want %s's %s", what, got, err, node.node.ID(), want)
		}
		if value != core.EnvoyCookieValue(want, format) {
			t.Fatalf("%s: route cookie %q, want %q", what, value, core.EnvoyCookieValue(want, format))
		}
	}
	type user struct {
		b     *browser
		owner *member
		cart  string
	}
	var users []*user
	for i := range 12 {
		m := ms[i%3]
		u := &user{b: &browser{t: t}, owner: m, cart: fmt.Sprintf("item%d", i)}
		code, v, set := envoyRoute(u.b, m, "/set?cart="+u.cart)
		if code != http.StatusOK || !set {
			t.Fatalf("login %d via %s: %d, route cookie set %v", i, m.node.ID(), code, set)
		}
		names(fmt.Sprintf("session %d created on %s", i, m.node.ID()), v, m)
		if _, ok := m.mgr.Snapshot(u.b.id); !ok {
			t.Fatalf("session %d: %s does not own it", i, m.node.ID())
		}
		users = append(users, u)
	}
	// A request that reaches a node other than the owner (a balancer that
	// ignored the cookie) moves the session there, and the cookie with it.
	moved := users[0]
	to := ms[1]
	if code, v, set := envoyRoute(moved.b, to, "/"); code != http.StatusOK || !set {
		t.Fatalf("read via %s: %d, route cookie set %v", to.node.ID(), code, set)
	} else {
		names("a session fetched by "+to.node.ID(), v, to)
	}
	moved.owner = to

	victim := ms[0]
	victim.kill()
	waitRing(t, ms)
	survivors := live(ms)
	lost := 0
	for i, u := range users {
		via := u.owner
		if u.owner == victim {
			lost++
			via = survivors[i%2]
		}
		var code int
		var v string
		var set bool
		for range 100 {
			if code, v, set = envoyRoute(u.b, via, "/"); code != http.StatusServiceUnavailable {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code != http.StatusOK {
			t.Fatalf("session %d via %s after the kill: %d", i, via.node.ID(), code)
		}
		if got := readAll(t, via, u.b.cookie); got["cart"] != u.cart {
			t.Fatalf("session %d via %s after the kill: %v, want cart=%s", i, via.node.ID(), got, u.cart)
		}
		if _, ok := via.mgr.Snapshot(u.b.id); !ok {
			t.Fatalf("session %d: %s served it but does not own it", i, via.node.ID())
		}
		switch {
		case u.owner == victim && !set:
			t.Fatalf("session %d taken over by %s: no route cookie", i, via.node.ID())
		case u.owner == victim:
			names(fmt.Sprintf("session %d taken over by %s", i, via.node.ID()), v, via)
		case set: // the owner lived; a new buddy may rewrite the cookies
			names(fmt.Sprintf("session %d on its owner %s", i, via.node.ID()), v, via)
		}
		u.owner = via
	}
	if lost != 3 {
		t.Fatalf("%d sessions on the killed node, want 3", lost)
	}
	// Read again: the cookie is not rewritten, or names the same owner.
	for i, u := range users {
		if code, v, set := envoyRoute(u.b, u.owner, "/"); code != http.StatusOK {
			t.Fatalf("session %d re-read via %s: %d", i, u.owner.node.ID(), code)
		} else if set {
			names(fmt.Sprintf("session %d re-read via %s", i, u.owner.node.ID()), v, u.owner)
		}
	}
}

// A node missing from EnvoyRoute's upstreams gets no route cookie (it is
// deleted), so that Envoy load-balances the session's requests.
func TestEnvoyRouteUnknownNode(t *testing.T) {
	route, err := core.EnvoyRoute(map[string]string{"n1": envoyUpstreams["n1"]}, core.EnvoyProto)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := coreCluster(t, 2, fastTimers, func(_ int, c *core.Config) {
		c.Cookie.RouteName = envoyCookie
		c.Cookie.RouteValue = route
	})
	b := &browser{t: t}
	if code, v, set := envoyRoute(b, ms[1], "/set?cart=x"); code != http.StatusOK || !set || v != "" {
		t.Fatalf("via n2: %d, route cookie %q (set %v), want it deleted", code, v, set)
	}
	if _, err := core.EnvoyRoute(map[string]string{"n1": "10.0.0.1"}, core.EnvoyProto); !errors.Is(err, core.ErrInvalidConfig) {
		t.Fatalf("an address without a port: %v", err)
	}
}
