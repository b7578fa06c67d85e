package node

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/dnsdisc"
	"github.com/tandemsession/tandem/core"
)

// The environment FromArgs reads. The keys come only from the environment
// (a flag would show in the process list); every other setting has a flag,
// which wins over its variable.
const (
	EnvID              = "TANDEM_NODE_ID"          // -id
	EnvZone            = "TANDEM_ZONE"             // -zone
	EnvHTTPAddr        = "TANDEM_HTTP_ADDR"        // -http
	EnvReplAddr        = "TANDEM_REPL_ADDR"        // -repl
	EnvPeers           = "TANDEM_PEERS"            // -peers: id=host:port,id=host:port,...
	EnvMode            = "TANDEM_MODE"             // -mode: sync or async
	EnvLogLevel        = "TANDEM_LOG_LEVEL"        // -log-level: debug, info, warn, error
	EnvShutdownDelay   = "TANDEM_SHUTDOWN_DELAY"   // -shutdown-delay
	EnvShutdownTimeout = "TANDEM_SHUTDOWN_TIMEOUT" // -shutdown-timeout

	// DNS discovery (package buddy/dnsdisc): set one of EnvDNSSRV or
	// EnvDNSHost to have the node ask DNS for its peers every
	// EnvDiscoveryInterval, on top of (or instead of) EnvPeers.
	EnvDNSSRV            = "TANDEM_DNS_SRV"            // -dns-srv: an SRV name; IDs are the targets' first labels (pod names)
	EnvDNSHost           = "TANDEM_DNS_HOST"           // -dns-host: a name with A/AAAA records; IDs are the addresses
	EnvDNSPort           = "TANDEM_DNS_PORT"           // -dns-port: the replication port with -dns-host; default -repl's
	EnvDiscoveryInterval = "TANDEM_DISCOVERY_INTERVAL" // -discovery-interval

	// EnvClusterKey holds the cluster key: 32 bytes, the same on every
	// node. A comma-separated list rotates keys: the first seals, all open.
	EnvClusterKey = "TANDEM_CLUSTER_KEY"
	// EnvCookieHashKey holds the cookie's HMAC key, at least 32 bytes; a
	// comma-separated list rotates keys, paired by position with
	// EnvCookieBlockKey's. The same on every node.
	EnvCookieHashKey = "TANDEM_COOKIE_HASH_KEY"
	// EnvCookieBlockKey holds the cookie's AES key, 16, 24 or 32 bytes;
	// a list pairs with EnvCookieHashKey's. The same on every node.
	EnvCookieBlockKey = "TANDEM_COOKIE_BLOCK_KEY"
)

// FromArgs reads a Config from the command-line flags in args (without
// the program name) and the environment that getenv reads: a flag wins
// over its variable, which wins over the default. The keys come from the
// environment only, in hex or base64 (see DecodeKey). The Logger writes
// text to stderr, where usage and flag errors go too. For -h, the error
// is flag.ErrHelp.
func FromArgs(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("tandem-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", env(EnvID, ""), "node ID, unique in the cluster; IDs order the ring (env "+EnvID+")")
	zone := fs.String("zone", env(EnvZone, ""), "failure domain: rack, host, availability zone (env "+EnvZone+")")
	httpAddr := fs.String("http", env(EnvHTTPAddr, "127.0.0.1:8080"), "the application's listen address (env "+EnvHTTPAddr+")")
	replAddr := fs.String("repl", env(EnvReplAddr, "127.0.0.1:7946"), "the replication listen address (env "+EnvReplAddr+")")
	peers := fs.String("peers", env(EnvPeers, ""), "every node of the cluster, id=host:port of its replication address, comma-separated (env "+EnvPeers+")")
	mode := fs.String("mode", env(EnvMode, "sync"), "replication mode: sync or async (env "+EnvMode+")")
	level := fs.String("log-level", env(EnvLogLevel, "info"), "debug, info, warn or error (env "+EnvLogLevel+")")
	delay := fs.String("shutdown-delay", env(EnvShutdownDelay, "0s"), "on SIGTERM, keep serving this long while /readyz answers 503 (env "+EnvShutdownDelay+")")
	timeout := fs.String("shutdown-timeout", env(EnvShutdownTimeout, "20s"), "bound on the graceful stop (env "+EnvShutdownTimeout+")")
	dnsSRV := fs.String("dns-srv", env(EnvDNSSRV, ""), "discover the peers from this SRV name, e.g. _repl._tcp.tandem.default.svc.cluster.local.; the node's -id must be its target's first label, the pod name (env "+EnvDNSSRV+")")
	dnsHost := fs.String("dns-host", env(EnvDNSHost, ""), "discover the peers from the A (or, for an IPv6 -id, AAAA) records of this name, e.g. tandem.default.svc.cluster.local.; the node's -id must be its IP address (env "+EnvDNSHost+")")
	dnsPort := fs.String("dns-port", env(EnvDNSPort, ""), "the peers' replication port with -dns-host (default: the port of -repl) (env "+EnvDNSPort+")")
	interval := fs.String("discovery-interval", env(EnvDiscoveryInterval, "10s"), "how often -dns-srv or -dns-host is asked (env "+EnvDiscoveryInterval+")")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem-node [flags]\n\nKeys, from the environment only, hex or base64, the same on every node:\n"+
			"  %s    32 bytes (openssl rand -hex 32)\n  %s  at least 32 bytes\n  %s  16, 24 or 32 bytes\n\nFlags:\n",
			EnvClusterKey, EnvCookieHashKey, EnvCookieBlockKey)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("node: unexpected arguments %q", fs.Args())
	}

	cfg := Config{ID: *id, Zone: *zone, HTTPAddr: *httpAddr, ReplAddr: *replAddr}
	if cfg.ID == "" {
		return Config{}, fmt.Errorf("node: -id (or %s) is required", EnvID)
	}
	var err error
	if cfg.Peers, err = ParsePeers(*peers); err != nil {
		return Config{}, err
	}
	switch *mode {
	case "sync":
		cfg.Mode = buddy.Sync
	case "async":
		cfg.Mode = buddy.Async
	default:
		return Config{}, fmt.Errorf("node: -mode %q: sync or async", *mode)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return Config{}, fmt.Errorf("node: -log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if cfg.ShutdownDelay, err = duration("-shutdown-delay", *delay); err != nil {
		return Config{}, err
	}
	if cfg.ShutdownTimeout, err = duration("-shutdown-timeout", *timeout); err != nil {
		return Config{}, err
	}
	if cfg.Discovery, err = dnsDiscovery(cfg, *dnsSRV, *dnsHost, *dnsPort); err != nil {
		return Config{}, err
	}
	if cfg.DiscoveryInterval, err = duration("-discovery-interval", *interval); err != nil {
		return Config{}, err
	}
	if cfg.DiscoveryInterval == 0 {
		return Config{}, errors.New("node: -discovery-interval: must be above 0")
	}
	if cfg.ClusterKeys, err = keyList(getenv, EnvClusterKey); err != nil {
		return Config{}, err
	}
	for i, k := range cfg.ClusterKeys {
		if len(k) != buddy.ClusterKeySize {
			return Config{}, fmt.Errorf("node: %s[%d]: %d bytes, need %d", EnvClusterKey, i, len(k), buddy.ClusterKeySize)
		}
	}
	if cfg.CookieKeys, err = cookieKeys(getenv); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// dnsDiscovery returns the DNS discovery that -dns-srv or -dns-host ask
// for (nil for neither), and checks that the node's ID is the one DNS
// gives it: with another, its peers would list a node that never answers
// and reject the one that pings them.
func dnsDiscovery(cfg Config, srv, host, port string) (buddy.Discovery, error) {
	switch {
	case srv == "" && host == "":
		if port != "" {
			return nil, errors.New("node: -dns-port goes with -dns-host")
		}
		return nil, nil
	case srv != "" && host != "":
		return nil, errors.New("node: -dns-srv and -dns-host: set one")
	case srv != "":
		if port != "" {
			return nil, errors.New("node: -dns-port goes with -dns-host; SRV records carry their ports")
		}
		if !dnsLabel(cfg.ID) {
			return nil, fmt.Errorf("node: -id %q: with -dns-srv a node's ID is the first label of its DNS name, in lower case: its pod name (metadata.name)", cfg.ID)
		}
		d, err := dnsdisc.New(dnsdisc.Config{SRV: srv, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("node: -dns-srv: %w", err)
		}
		return d, nil
	}
	ip, err := netip.ParseAddr(cfg.ID)
	if err != nil || ip.String() != cfg.ID {
		return nil, fmt.Errorf("node: -id %q: with -dns-host a node's ID is its IP address in canonical form (status.podIP)", cfg.ID)
	}
	// Only the records of the ID's family: in a dual-stack cluster a pod
	// has an A and an AAAA record, and the other one would be a second
	// node that is never there.
	network := "ip4"
	if ip.Is6() {
		network = "ip6"
	}
	if port == "" {
		_, port, _ = net.SplitHostPort(cfg.ReplAddr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("node: -dns-port %q: a port, 1 to 65535", port)
	}
	d, err := dnsdisc.New(dnsdisc.Config{Host: host, Port: p, Network: network, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("node: -dns-host: %w", err)
	}
	return d, nil
}

// dnsLabel reports whether s is what dnsdisc derives from an SRV target:
// one label of a DNS name in lower case (1 to 63 letters, digits, hyphens,
// underscores).
func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func duration(name, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("node: %s %q: a duration such as 5s", name, s)
	}
	return d, nil
}

// ParsePeers reads a peer list, id=host:port,id=host:port,... ("" is none).
func ParsePeers(s string) ([]buddy.Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []buddy.Peer
	for part := range strings.SplitSeq(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("node: peers: bad entry %q, want id=host:port", part)
		}
		peers = append(peers, buddy.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// FormatPeers writes peers the way ParsePeers reads them.
func FormatPeers(peers []buddy.Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Addr
	}
	return strings.Join(parts, ",")
}

// DecodeKey decodes a key written in hex or base64. A "hex:" or "base64:"
// prefix says which; without one, a value made only of hex digits (an even
// number of them) is hex, and anything else base64 (standard or URL
// alphabet, padded or not).
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "hex:"):
		return hex.DecodeString(s[len("hex:"):])
	case strings.HasPrefix(s, "base64:"):
		return decodeBase64(s[len("base64:"):])
	}
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	return decodeBase64(s)
}

func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("neither hex nor base64: %w", err)
}

// keyList reads the comma-separated keys of variable name.
func keyList(getenv func(string) string, name string) ([][]byte, error) {
	v := getenv(name)
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("node: %s is not set: every node of the cluster needs the same keys (generate one with: openssl rand -hex 32)", name)
	}
	var keys [][]byte
	for i, part := range strings.Split(v, ",") {
		k, err := DecodeKey(part)
		if err != nil {
			return nil, fmt.Errorf("node: %s[%d]: %w", name, i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// cookieKeys pairs the hash and block keys of the environment.
func cookieKeys(getenv func(string) string) ([]core.KeyPair, error) {
	hashes, err := keyList(getenv, EnvCookieHashKey)
	if err != nil {
		return nil, err
	}
	blocks, err := keyList(getenv, EnvCookieBlockKey)
	if err != nil {
		return nil, err
	}
	if len(hashes) != len(blocks) {
		return nil, fmt.Errorf("node: %s lists %d keys and %s %d: they pair by position", EnvCookieHashKey, len(hashes), EnvCookieBlockKey, len(blocks))
	}
	pairs := make([]core.KeyPair, len(hashes))
	for i := range hashes {
		if len(hashes[i]) < 32 {
			return nil, fmt.Errorf("node: %s[%d]: %d bytes, need at least 32", EnvCookieHashKey, i, len(hashes[i]))
		}
		switch len(blocks[i]) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("node: %s[%d]: %d bytes, need 16, 24 or 32", EnvCookieBlockKey, i, len(blocks[i]))
		}
		pairs[i] = core.KeyPair{Hash: hashes[i], Block: blocks[i]}
	}
	return pairs, nil
}
