// Package dnsdisc is a buddy.Discovery that reads the cluster from DNS on
// every call: the SRV records of a named port, or the A/AAAA records of a
// name with a fixed port. On Kubernetes both come from a headless Service,
// so a StatefulSet or a Deployment of Tandem nodes finds itself with no
// store, registry or client library: only the standard library's resolver.
//
//	disc, err := dnsdisc.New(dnsdisc.Config{
//		SRV: "_repl._tcp.tandem.default.svc.cluster.local.",
//	})
//	...
//	node, err := buddy.New(buddy.Config{ID: podName, Discovery: disc, ...})
//
// # Which records, which IDs
//
// With Config.SRV, each SRV record is one node: Peer.Addr is the record's
// target and port ("tandem-0.tandem.default.svc.cluster.local:7946"),
// resolved by the node each time it dials, and Peer.ID is the target's
// first label ("tandem-0"). Kubernetes names the target of a StatefulSet's
// pod after the pod (<pod>.<service>.<namespace>.svc.<cluster domain>),
// so the ID is the pod name: stable across restarts and rescheduling, and
// what the pod sets its own ID to (the downward API's metadata.name). For
// a pod without a hostname (a Deployment's), CoreDNS names the target
// after its IP address with dashes ("10-244-1-7", unless its
// endpoint_pod_names option is on): a new ID at every new pod, and one no
// downward-API field gives; use address records for a Deployment.
//
// With Config.Host and Config.Port, each address is one node: Peer.Addr is
// ip:port and Peer.ID is the address in its canonical text form
// ("10.244.1.7", "fd00::7"), which is what the downward API's status.podIP
// gives the pod for its own ID. Pod IPs are not stable: a Deployment's
// pod, or a StatefulSet's rescheduled pod, comes back as a new node. That
// costs nothing a rolling update does not already do (the stopping node
// hands its sessions over first), but it makes the ring order change; use
// SRV for a StatefulSet. A reverse (PTR) lookup per address would name
// the nodes no better and cost one query each per call, so there is none.
//
// Either way a node's own ID must be the one this package derives for it,
// or its peers see two nodes (the one DNS lists, which never answers, and
// the one that pings them, which they reject as unknown). Config.ID
// replaces the derivation.
//
// # What a call returns
//
// Peers returns the nodes sorted by ID, or an error, never an empty list
// with a nil error: a node that got an empty list would mark every peer
// as gone. NXDOMAIN, an answer with no records and an answer with no
// usable record are ErrNoRecords; more than Config.MaxRecords records are
// ErrTooManyRecords. On any error the node keeps the peers it had and
// asks again at the next DiscoveryInterval. A record that cannot be a
// peer (port 0, a target that is not a host name, the "." target, an ID
// or zone that is empty, longer than 64 bytes or not printable ASCII) is
// left out and logged; when two records give one ID, the one with the
// smaller Addr is kept, so every node computes the same list from the same
// answer.
//
// # Zones
//
// DNS says nothing about failure domains, so by default every peer is in
// zone "". Config.Zone derives one from each record: StatefulSetZone
// implements the convention of one StatefulSet per zone (tandem-a, tandem-b,
// each pinned to its zone) behind one headless Service, where a pod's zone
// is its StatefulSet's name; set each pod's own buddy.Config.Zone to the
// same.
package dnsdisc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/tandemsession/tandem/buddy"
)

// Resolver is the part of *net.Resolver that Discovery uses; tests and
// programs with their own DNS client pass one in Config.Resolver.
type Resolver interface {
	// LookupSRV is net.Resolver.LookupSRV; Discovery calls it with empty
	// service and proto, so name is looked up as given.
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
	// LookupNetIP is net.Resolver.LookupNetIP.
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Defaults of Config.
const (
	// DefaultTimeout bounds one call of Peers, below the 5 s the node
	// allows a discovery round.
	DefaultTimeout = 3 * time.Second
	// DefaultMaxRecords is the most records an answer may hold.
	DefaultMaxRecords = 1024
	// MaxIDLen is the longest node ID (and zone) a record may give, in
	// bytes: the ID limit of buddy.Peer.
	MaxIDLen = 64
)

var (
	// ErrNoRecords: the name does not exist (NXDOMAIN), has no record of
	// the type asked, or none of its records can be a peer.
	ErrNoRecords = errors.New("dnsdisc: no records")
	// ErrTooManyRecords: the answer holds more than Config.MaxRecords
	// records; none is used.
	ErrTooManyRecords = errors.New("dnsdisc: too many records")
	// ErrInvalidConfig wraps every error New returns.
	ErrInvalidConfig = errors.New("dnsdisc: invalid config")
)

// Record is one DNS record as Config.ID and Config.Zone see it.
type Record struct {
	// Host is an SRV record's target in lower case, without the final
	// dot; "" for an address record.
	Host string
	// IP is an A or AAAA record's address (an IPv4-mapped IPv6 address
	// unmapped); the zero Addr for an SRV record.
	IP netip.Addr
	// Port is the SRV record's port, or Config.Port.
	Port uint16
	// Priority and Weight are the SRV record's; 0 for an address record.
	Priority, Weight uint16
}

// Config configures a Discovery. Set exactly one of SRV or Host.
type Config struct {
	// SRV is the name whose SRV records list the nodes, for example
	// "_repl._tcp.tandem.default.svc.cluster.local." for the port named
	// "repl" of the headless Service "tandem" in namespace "default".
	// End it with a dot: a name without one goes through the search
	// domains of resolv.conf first (ndots:5 on Kubernetes), several
	// queries per call. Default "": use Host.
	SRV string
	// Host is the name whose A and AAAA records list the nodes, for example
	// "tandem.default.svc.cluster.local.". Default "": use SRV.
	Host string
	// Port is every node's replication port when Host is set (SRV records
	// carry their own). Default 0, which only SRV allows: with Host, 1 to
	// 65535 is required.
	Port int
	// Network selects the address records with Host: "ip" (A and AAAA),
	// "ip4" (A) or "ip6" (AAAA). Default "ip". In a dual-stack cluster
	// each pod has both, and would be two peers: choose the family of the
	// pods' own IDs (status.podIP).
	Network string
	// Resolver answers the lookups. Default net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds one call of Peers (every query it makes), within the
	// deadline of the caller's context. Default DefaultTimeout, 3 s. (A
	// *net.Resolver query that Peers gave up on may still wait for its
	// answer in the background, up to resolv.conf's timeout, 5 s by
	// default; a Resolver whose Dial closes the connection when its
	// context ends does not.)
	Timeout time.Duration
	// MaxRecords is the most records an answer may hold; a larger answer
	// is ErrTooManyRecords. Default DefaultMaxRecords, 1024.
	MaxRecords int
	// ID derives a node's ID from its record. Default DefaultID: an SRV
	// target's first label, an address's text form. An ID must be 1 to
	// MaxIDLen bytes of printable ASCII without spaces, or the record is
	// left out.
	ID func(Record) string
	// Zone derives a node's failure domain from its record, under the
	// same rules as an ID except that "" is allowed. Default nil: every
	// peer in zone "". StatefulSetZone is one convention.
	Zone func(Record) string
	// Logger receives a warning for each call that left records out.
	// Default: discarded.
	Logger *slog.Logger
}

// Discovery lists the cluster's nodes from DNS; it implements
// buddy.Discovery. It keeps no state between calls and is safe for
// concurrent use.
type Discovery struct {
	cfg Config
}

var _ buddy.Discovery = (*Discovery)(nil)

// New validates cfg, fills in its defaults and returns the Discovery.
// Errors wrap ErrInvalidConfig.
func New(cfg Config) (*Discovery, error) {
	bad := func(format string, args ...any) (*Discovery, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.SRV == "" && cfg.Host == "":
		return bad("set SRV or Host")
	case cfg.SRV != "" && cfg.Host != "":
		return bad("set SRV or Host, not both")
	case cfg.SRV != "":
		if !validName(cfg.SRV) {
			return bad("SRV: %q is not a domain name", cfg.SRV)
		}
		if cfg.Port != 0 {
			return bad("Port: SRV records carry their own ports; leave Port 0")
		}
		if cfg.Network != "" {
			return bad("Network: only with Host")
		}
	default:
		if !validName(cfg.Host) {
			return bad("Host: %q is not a domain name", cfg.Host)
		}
		if cfg.Port < 1 || cfg.Port > 65535 {
			return bad("Port: %d, want 1 to 65535 with Host", cfg.Port)
		}
		switch cfg.Network {
		case "":
			cfg.Network = "ip"
		case "ip", "ip4", "ip6":
		default:
			return bad("Network: %q, want ip, ip4 or ip6", cfg.Network)
		}
	}
	if cfg.Timeout < 0 {
		return bad("Timeout: negative (%v)", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRecords < 0 {
		return bad("MaxRecords: negative (%d)", cfg.MaxRecords)
	}
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = DefaultMaxRecords
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.ID == nil {
		cfg.ID = DefaultID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Discovery{cfg: cfg}, nil
}

// String says what the Discovery looks up: "dns srv <name>" or
// "dns ip <name> port <port>".
func (d *Discovery) String() string {
	if d.cfg.SRV != "" {
		return "dns srv " + d.cfg.SRV
	}
	return fmt.Sprintf("dns %s %s port %d", d.cfg.Network, d.cfg.Host, d.cfg.Port)
}

// Peers looks the nodes up and returns them sorted by ID. It returns an
// error, never an empty list: ErrNoRecords when there is no usable record,
// ErrTooManyRecords beyond MaxRecords, or the resolver's error (a
// *net.DNSError from *net.Resolver: a timeout, SERVFAIL, a malformed
// answer), each wrapped. It returns within Config.Timeout, or sooner when
// ctx ends.
func (d *Discovery) Peers(ctx context.Context) ([]buddy.Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	recs, skipped, err := d.lookup(ctx)
	if err != nil {
		return nil, err
	}
	peers, more, err := d.convert(recs)
	skipped = append(skipped, more...)
	if len(skipped) > 0 {
		d.cfg.Logger.Warn("dnsdisc: records left out", "lookup", d.String(),
			"skipped", len(skipped), "used", len(peers), "first", skipped[0])
	}
	if err != nil {
		return nil, err
	}
	return peers, nil
}

// lookup runs the query and returns its records; skipped lists what the
// resolver itself left out.
func (d *Discovery) lookup(ctx context.Context) (recs []Record, skipped []string, err error) {
	if d.cfg.SRV != "" {
		_, srvs, err := d.cfg.Resolver.LookupSRV(ctx, "", "", d.cfg.SRV)
		if err != nil {
			// *net.Resolver drops the records whose target is not a
			// domain name and says so with an error next to the others,
			// which are used. A partial answer for any other reason (a
			// timeout) is not: it would make the missing nodes leave.
			if len(srvs) == 0 || ctx.Err() != nil || transient(err) {
				return nil, nil, lookupError("SRV", d.cfg.SRV, err)
			}
			skipped = append(skipped, err.Error())
		}
		if len(srvs) > d.cfg.MaxRecords {
			return nil, nil, fmt.Errorf("%w: SRV %s: %d records, at most %d", ErrTooManyRecords, d.cfg.SRV, len(srvs), d.cfg.MaxRecords)
		}
		recs = make([]Record, 0, len(srvs))
		for _, s := range srvs {
			if s == nil {
				continue
			}
			recs = append(recs, Record{Host: s.Target, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
		}
		return recs, skipped, nil
	}
	ips, err := d.cfg.Resolver.LookupNetIP(ctx, d.cfg.Network, d.cfg.Host)
	if err != nil {
		return nil, nil, lookupError(d.cfg.Network, d.cfg.Host, err)
	}
	if len(ips) > d.cfg.MaxRecords {
		return nil, nil, fmt.Errorf("%w: %s %s: %d records, at most %d", ErrTooManyRecords, d.cfg.Network, d.cfg.Host, len(ips), d.cfg.MaxRecords)
	}
	recs = make([]Record, len(ips))
	for i, ip := range ips {
		recs[i] = Record{IP: ip, Port: uint16(d.cfg.Port)}
	}
	return recs, nil, nil
}

// lookupError wraps a resolver's error, with ErrNoRecords when it says the
// name or its records do not exist.
func lookupError(kind, name string, err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return fmt.Errorf("%w: %s %s: %w", ErrNoRecords, kind, name, err)
	}
	return fmt.Errorf("dnsdisc: %s %s: %w", kind, name, err)
}

// transient reports whether err says the answer may be incomplete.
func transient(err error) bool {
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		return true
	}
	return dnsErr.IsTimeout || dnsErr.IsTemporary || dnsErr.IsNotFound
}

// DefaultID is the ID Config.ID defaults to: an SRV record's target's first
// label ("tandem-0" for tandem-0.tandem.default.svc.cluster.local), an
// address record's address in canonical text form ("10.244.1.7",
// "fd00::7").
func DefaultID(r Record) string {
	if r.Host != "" {
		label, _, _ := strings.Cut(r.Host, ".")
		return label
	}
	if r.IP.IsValid() {
		return r.IP.String()
	}
	return ""
}

// StatefulSetZone is a Config.Zone for one StatefulSet per failure domain
// behind one headless Service: the zone is the StatefulSet's name, the
// pod name (the SRV target's first label) without its "-<ordinal>"
// suffix: "tandem-a" for tandem-a-0.tandem.default.svc.cluster.local. It
// returns "" for an address record, and for a name without an ordinal.
func StatefulSetZone(r Record) string {
	label, _, _ := strings.Cut(r.Host, ".")
	i := strings.LastIndexByte(label, '-')
	if i <= 0 || i == len(label)-1 {
		return ""
	}
	for _, c := range label[i+1:] {
		if c < '0' || c > '9' {
			return ""
		}
	}
	return label[:i]
}
