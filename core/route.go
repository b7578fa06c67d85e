package core

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// routeValue is the route cookie's value for a session owned by owner:
// "" (delete the cookie) when there is no owner, CookieConfig.RouteValue's
// answer when it is set, the owner's node ID otherwise.
func (m *Manager) routeValue(owner string) string {
	if owner == "" {
		return ""
	}
	if f := m.cfg.Cookie.RouteValue; f != nil {
		return f(owner)
	}
	return owner
}

// EnvoyFormat is an encoding of Envoy's stateful-session cookie (the
// extension envoy.http.stateful_session.cookie), whose value names the
// upstream host that Envoy sends the request to.
type EnvoyFormat int

const (
	// EnvoyProto is the base64 (standard alphabet, padded) of the protobuf
	// message envoy.Cookie{address: "host:port"}, without an expiry. It is
	// what recent Envoy releases write (the runtime guard
	// envoy.reloadable_features.stateful_session_encode_ttl_in_cookie, on
	// by default) and the format they try first when they read the
	// cookie. Use it unless your Envoy is older.
	EnvoyProto EnvoyFormat = iota
	// EnvoyPlain is the base64 of "host:port" itself, what Envoy wrote
	// before the protobuf format. Recent Envoy still reads it when it does
	// not parse as the protobuf message, but some addresses do parse
	// (10.0.0.1:8080 reads as a message of unknown fields with no
	// address), and Envoy then ignores the cookie: with a recent Envoy use
	// EnvoyProto. To tell which format your Envoy writes, decode a cookie
	// it set (base64 -d): a plain host:port is EnvoyPlain.
	EnvoyPlain
)

// String returns "proto" or "plain".
func (f EnvoyFormat) String() string {
	switch f {
	case EnvoyProto:
		return "proto"
	case EnvoyPlain:
		return "plain"
	}
	return "EnvoyFormat(" + strconv.Itoa(int(f)) + ")"
}

// EnvoyCookieValue returns the value of an Envoy stateful-session cookie
// that sends requests to the upstream host hostport, in format. hostport
// must be written the way Envoy writes the endpoint's address (it
// compares the strings): an IP address and a port, "10.0.0.1:8080", or
// "[fd00::1]:8080" for IPv6.
func EnvoyCookieValue(hostport string, format EnvoyFormat) string {
	if format == EnvoyPlain {
		return base64.StdEncoding.EncodeToString([]byte(hostport))
	}
	// Field 1 (address), wire type 2 (length-delimited): tag byte 0x0a,
	// the length as a varint, the bytes.
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(hostport))
	b = append(b, 0x0a)
	b = binary.AppendUvarint(b, uint64(len(hostport)))
	b = append(b, hostport...)
	return base64.StdEncoding.EncodeToString(b)
}

// EnvoyRoute returns a CookieConfig.RouteValue that writes the route
// cookie the way Envoy's stateful-session filter reads it, so that Envoy
// (and Istio, and Gateway API implementations built on Envoy) sends each
// request straight to the node that owns its session. upstreams maps each
// node ID to the address at which Envoy knows that node's application,
// as Envoy writes it: an IP address and a port ("10.0.0.1:8080"; in
// Kubernetes, the pod IP and the container port). A node missing from
// upstreams gets no route cookie: Envoy load-balances its requests and
// the node that receives one fetches the session. Name the route cookie
// (CookieConfig.RouteName) as Envoy's filter configuration names its
// cookie, with the same path. EnvoyRoute copies upstreams; an entry that
// is not host:port with a numeric port is an error.
func EnvoyRoute(upstreams map[string]string, format EnvoyFormat) (func(owner string) string, error) {
	if format != EnvoyProto && format != EnvoyPlain {
		return nil, fmt.Errorf("%w: EnvoyRoute: unknown format %v", ErrInvalidConfig, format)
	}
	values := make(map[string]string, len(upstreams))
	for id, addr := range upstreams {
		host, port, err := net.SplitHostPort(addr)
		if err == nil && host == "" {
			err = errors.New("no host")
		}
		if p, perr := strconv.Atoi(port); err == nil && (perr != nil || p < 1 || p > 65535) {
			err = fmt.Errorf("port %q", port)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: EnvoyRoute: node %q: address %q: %w", ErrInvalidConfig, id, addr, err)
		}
		values[id] = EnvoyCookieValue(addr, format)
	}
	return func(owner string) string { return values[owner] }, nil
}
