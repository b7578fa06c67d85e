package dnsdisc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const srvName = "_repl._tcp.tandem.default.svc.cluster.test."

// newDisc returns a Discovery of cfg that asks s.
func newDisc(t *testing.T, s *dnsServer, cfg Config) *Discovery {
	t.Helper()
	cfg.Resolver = s.resolver()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func format(peers []buddy.Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Addr
		if p.Zone != "" {
			parts[i] += "@" + p.Zone
		}
	}
	return strings.Join(parts, " ")
}

func TestSRV(t *testing.T) {
	s := startDNS(t)
	s.setSRV(t, srvName,
		"tandem-2.tandem.default.svc.cluster.test:7946",
		"Tandem-0.Tandem.Default.svc.cluster.test:7946", // names are case-insensitive: lower-cased
		"tandem-1.tandem.default.svc.cluster.test:7947",
	)
	d := newDisc(t, s, Config{SRV: srvName})
	peers, err := d.Peers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := "tandem-0=tandem-0.tandem.default.svc.cluster.test:7946 " +
		"tandem-1=tandem-1.tandem.default.svc.cluster.test:7947 " +
		"tandem-2=tandem-2.tandem.default.svc.cluster.test:7946"
	if got := format(peers); got != want {
		t.Fatalf("peers\n got %s\nwant %s", got, want)
	}
	if got := d.String(); got != "dns srv "+srvName {
		t.Fatalf("String %q", got)
	}
}

// Hundreds of nodes do not fit a UDP answer: the server truncates it and
// the resolver asks again over TCP.
func TestSRVHundredsOfNodesOverTCP(t *testing.T) {
	s := startDNS(t)
	var targets []string
	for i := range 300 {
		targets = append(targets, fmt.Sprintf("tandem-%d.tandem.default.svc.cluster.test:7946", i))
	}
	s.setSRV(t, srvName, targets...)
	d := newDisc(t, s, Config{SRV: srvName})
	peers, err := d.Peers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 300 {
		t.Fatalf("%d peers, want 300", len(peers))
	}
	for i := 1; i < len(peers); i++ {
		if peers[i-1].ID >= peers[i].ID {
			t.Fatalf("not sorted by ID at %d: %s, %s", i, peers[i-1].ID, peers[i].ID)
		}
	}
	if s.tcpUsed.Load() == 0 {
		t.Fatal("the answer did not go over TCP")
	}
}

func TestTooManyRecords(t *testing.T) {
	s := startDNS(t)
	var targets []string
	var ips []string
	for i := range 11 {
		targets = append(targets, fmt.Sprintf("n%d.test:7946", i))
		ips = append(ips, fmt.Sprintf("10.0.0.%d", i+1))
	}
	s.setSRV(t, srvName, targets...)
	s.setIPs("nodes.test", ips...)
	for _, cfg := range []Config{{SRV: srvName, MaxRecords: 10}, {Host: "nodes.test.", Port: 7946, MaxRecords: 10}} {
		peers, err := newDisc(t, s, cfg).Peers(t.Context())
		if !errors.Is(err, ErrTooManyRecords) || peers != nil {
			t.Errorf("%+v: %v, %v; want ErrTooManyRecords", cfg, peers, err)
		}
	}
	peers, err := newDisc(t, s, Config{SRV: srvName, MaxRecords: 11}).Peers(t.Context())
	if err != nil || len(peers) != 11 {
		t.Fatalf("MaxRecords 11: %d peers, %v", len(peers), err)
	}
}

func TestAddressRecords(t *testing.T) {
	s := startDNS(t)
	s.setIPs("tandem.default.svc.cluster.test", "10.244.1.7", "10.244.0.12", "fd00::7", "::ffff:10.244.2.3")
	for _, tc := range []struct {
		network, want string
	}{
		{"", "10.244.0.12=10.244.0.12:7946 10.244.1.7=10.244.1.7:7946 10.244.2.3=10.244.2.3:7946 fd00::7=[fd00::7]:7946"},
		{"ip4", "10.244.0.12=10.244.0.12:7946 10.244.1.7=10.244.1.7:7946"}, // ::ffff:10.244.2.3 is an AAAA record
		{"ip6", "fd00::7=[fd00::7]:7946"},
	} {
		d := newDisc(t, s, Config{Host: "tandem.default.svc.cluster.test.", Port: 7946, Network: tc.network})
		peers, err := d.Peers(t.Context())
		if err != nil {
			t.Fatalf("network %q: %v", tc.network, err)
		}
		if got := format(peers); got != tc.want {
			t.Errorf("network %q:\n got %s\nwant %s", tc.network, got, tc.want)
		}
	}
	d := newDisc(t, s, Config{Host: "tandem.default.svc.cluster.test.", Port: 7946})
	if got := d.String(); got != "dns ip tandem.default.svc.cluster.test. port 7946" {
		t.Fatalf("String %q", got)
	}
}

func TestNoRecords(t *testing.T) {
	s := startDNS(t)
	s.setIPs("empty.test")              // the name exists, with no address
	s.set("nosrv.test", dnsEntry{})     // exists, no SRV
	s.setIPs("v4only.test", "10.0.0.1") // no AAAA
	for _, cfg := range []Config{
		{SRV: "_repl._tcp.missing.test."},               // NXDOMAIN
		{SRV: "nosrv.test."},                            // NOERROR, no answer
		{Host: "missing.test.", Port: 1},                // NXDOMAIN
		{Host: "empty.test.", Port: 1},                  // NOERROR, no answer
		{Host: "v4only.test.", Port: 1, Network: "ip6"}, // no record of the type asked
	} {
		peers, err := newDisc(t, s, cfg).Peers(t.Context())
		if !errors.Is(err, ErrNoRecords) || peers != nil {
			t.Errorf("%s %s: %v, %v; want ErrNoRecords", cfg.SRV, cfg.Host, peers, err)
			continue
		}
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("%s %s: %v does not wrap the resolver's not-found *net.DNSError", cfg.SRV, cfg.Host, err)
		}
	}
}

// Failures of the server, or of its answers, are errors, not ErrNoRecords;
// never an empty list.
func TestServerFailures(t *testing.T) {
	s := startDNS(t)
	s.set("servfail.test", dnsEntry{rcode: dnsmessage.RCodeServerFailure})
	s.set("refused.test", dnsEntry{rcode: dnsmessage.RCodeRefused})
	s.set("garbage.test", dnsEntry{raw: garbage})
	s.set("truncated.test", dnsEntry{raw: func(q []byte) []byte { return q[:len(q)/2] }})
	for _, name := range []string{"servfail.test.", "refused.test.", "garbage.test.", "truncated.test."} {
		for _, cfg := range []Config{{SRV: name}, {Host: name, Port: 1}} {
			cfg.Timeout = 500 * time.Millisecond
			peers, err := newDisc(t, s, cfg).Peers(t.Context())
			if err == nil || errors.Is(err, ErrNoRecords) || peers != nil {
				t.Errorf("%s %s: %v, %v; want an error other than ErrNoRecords", cfg.SRV, cfg.Host, peers, err)
				continue
			}
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) {
				t.Errorf("%s %s: %v does not wrap a *net.DNSError", cfg.SRV, cfg.Host, err)
			}
		}
	}
}

// A server that never answers: Peers returns within Timeout, or when the
// caller's context ends if that comes first.
func TestTimeout(t *testing.T) {
	s := startDNS(t)
	s.set("silent.test", dnsEntry{raw: silent})
	for _, cfg := range []Config{{SRV: "silent.test."}, {Host: "silent.test.", Port: 1}} {
		cfg.Timeout = 200 * time.Millisecond
		d := newDisc(t, s, cfg)
		start := time.Now()
		peers, err := d.Peers(t.Context())
		took := time.Since(start)
		if err == nil || peers != nil || errors.Is(err, ErrNoRecords) {
			t.Fatalf("%v, %v; want a timeout", peers, err)
		}
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout {
			t.Errorf("%v: not a *net.DNSError timeout", err)
		}
		if took > 2*time.Second {
			t.Errorf("took %v with a 200ms timeout", took)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		cfg.Timeout = time.Minute
		start = time.Now()
		_, err = newDisc(t, s, cfg).Peers(ctx)
		cancel()
		if err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("caller's 50ms deadline: %v after %v", err, time.Since(start))
		}
	}
}

// Records that cannot be peers are left out (and logged); the others are
// used. When none is left, it is ErrNoRecords.
func TestUnusableRecordsAreLeftOut(t *testing.T) {
	s := startDNS(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	good := dnsmessage.SRVResource{Port: 7946, Target: dnsmessage.MustNewName("good-0.tandem.test.")}
	s.set(srvName, dnsEntry{srv: []dnsmessage.SRVResource{
		good,
		{Port: 0, Target: dnsmessage.MustNewName("noport-0.tandem.test.")},
		{Port: 7946, Target: dnsmessage.MustNewName(".")},                           // RFC 2782: no service
		{Port: 7946, Target: dnsmessage.MustNewName("bad!name.tandem.test.")},       // dropped by the resolver
		{Port: 7946, Target: dnsmessage.MustNewName("sp ace.tandem.test.")},         // dropped by the resolver
		{Port: 7946, Target: dnsmessage.MustNewName("-leading.tandem.test.")},       // dropped by the resolver
		{Port: 7946, Target: dnsmessage.MustNewName("good-0.elsewhere.test.")},      // same ID, larger Addr
		{Port: 7946, Target: dnsmessage.MustNewName(strings.Repeat("x", 63) + ".")}, // a 63-byte ID is fine
	}})
	d := newDisc(t, s, Config{SRV: srvName, Logger: log})
	peers, err := d.Peers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := "good-0=good-0.elsewhere.test:7946 " + strings.Repeat("x", 63) + "=" + strings.Repeat("x", 63) + ":7946"
	if got := format(peers); got != want {
		t.Fatalf("peers\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(logs.String(), "records left out") || !strings.Contains(logs.String(), "skipped=4") {
		t.Fatalf("log: %s", logs.String())
	}

	// The resolver's error stands for the three targets it dropped; port
	// 0, "." and the duplicate make four.

	// An ID function that gives IDs too long, or not printable.
	for _, id := range []func(Record) string{
		func(r Record) string { return strings.Repeat("y", MaxIDLen+1) },
		func(r Record) string { return "" },
		func(r Record) string { return "a b" },
		func(r Record) string { return "caf\u00e9" },
	} {
		_, err := newDisc(t, s, Config{SRV: srvName, ID: id}).Peers(t.Context())
		if !errors.Is(err, ErrNoRecords) {
			t.Errorf("bad IDs: %v, want ErrNoRecords", err)
		}
	}
	_, err = newDisc(t, s, Config{SRV: srvName, Zone: func(Record) string { return "\x00" }}).Peers(t.Context())
	if !errors.Is(err, ErrNoRecords) {
		t.Errorf("bad zones: %v, want ErrNoRecords", err)
	}

	s.set(srvName, dnsEntry{srv: []dnsmessage.SRVResource{{Port: 7946, Target: dnsmessage.MustNewName(".")}}})
	if _, err := d.Peers(t.Context()); !errors.Is(err, ErrNoRecords) {
		t.Fatalf(`only the "." target: %v, want ErrNoRecords`, err)
	}
	s.set(srvName, dnsEntry{srv: []dnsmessage.SRVResource{{Port: 7946, Target: dnsmessage.MustNewName("bad!.test.")}}})
	if _, err := d.Peers(t.Context()); err == nil {
		t.Fatal("only invalid targets: no error")
	}
}

// Every node must compute the same list from the same answer: duplicates
// resolve the same way whatever the order of the records.
func TestDuplicateIDsAreDeterministic(t *testing.T) {
	s := startDNS(t)
	targets := []string{"n1.a.test:1", "n1.b.test:1", "n1.a.test:2", "n2.a.test:1", "n1.a.test:1"}
	for i := range len(targets) {
		rotated := append(append([]string(nil), targets[i:]...), targets[:i]...)
		s.setSRV(t, srvName, rotated...)
		peers, err := newDisc(t, s, Config{SRV: srvName}).Peers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := format(peers); got != "n1=n1.a.test:1 n2=n2.a.test:1" {
			t.Fatalf("order %v: %s", rotated, got)
		}
	}
}

func TestZones(t *testing.T) {
	s := startDNS(t)
	s.setSRV(t, srvName, "tandem-a-0.tandem.test:1", "tandem-b-0.tandem.test:1", "tandem-a-1.tandem.test:1", "solo.tandem.test:1")
	peers, err := newDisc(t, s, Config{SRV: srvName, Zone: StatefulSetZone}).Peers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := "solo=solo.tandem.test:1 tandem-a-0=tandem-a-0.tandem.test:1@tandem-a " +
		"tandem-a-1=tandem-a-1.tandem.test:1@tandem-a tandem-b-0=tandem-b-0.tandem.test:1@tandem-b"
	if got := format(peers); got != want {
		t.Fatalf("peers\n got %s\nwant %s", got, want)
	}
}

func TestDefaultIDAndStatefulSetZone(t *testing.T) {
	for _, tc := range []struct {
		r        Record
		id, zone string
	}{
		{Record{Host: "tandem-0.tandem.default.svc.cluster.local"}, "tandem-0", "tandem"},
		{Record{Host: "web-a-12.web.prod.svc.cluster.local"}, "web-a-12", "web-a"},
		{Record{Host: "10-244-1-7.tandem.default.svc.cluster.local"}, "10-244-1-7", "10-244-1"},
		{Record{Host: "single"}, "single", ""},
		{Record{Host: "-0.x"}, "-0", ""},
		{Record{Host: "web-.x"}, "web-", ""},
		{Record{Host: "web-0a.x"}, "web-0a", ""},
		{Record{IP: mustAddr("10.244.1.7")}, "10.244.1.7", ""},
		{Record{IP: mustAddr("fd00::7")}, "fd00::7", ""},
		{Record{}, "", ""},
	} {
		if got := DefaultID(tc.r); got != tc.id {
			t.Errorf("DefaultID(%+v) = %q, want %q", tc.r, got, tc.id)
		}
		if got := StatefulSetZone(tc.r); got != tc.zone {
			t.Errorf("StatefulSetZone(%+v) = %q, want %q", tc.r, got, tc.zone)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "SRV or Host"},
		{Config{SRV: "a.test.", Host: "b.test."}, "not both"},
		{Config{SRV: "bad name.test."}, "SRV"},
		{Config{SRV: strings.Repeat("a.", 130)}, "SRV"},
		{Config{SRV: "a.test.", Port: 7946}, "Port"},
		{Config{SRV: "a.test.", Network: "ip4"}, "Network"},
		{Config{Host: "a..test."}, "Host"},
		{Config{Host: "a.test."}, "Port"},
		{Config{Host: "a.test.", Port: 65536}, "Port"},
		{Config{Host: "a.test.", Port: 1, Network: "tcp"}, "Network"},
		{Config{Host: "a.test.", Port: 1, Timeout: -1}, "Timeout"},
		{Config{Host: "a.test.", Port: 1, MaxRecords: -1}, "MaxRecords"},
	} {
		d, err := New(tc.cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || d != nil {
			t.Errorf("%+v: %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.want)
		}
	}
	d, err := New(Config{SRV: "_repl._tcp.tandem.default.svc.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.Timeout != DefaultTimeout || d.cfg.MaxRecords != DefaultMaxRecords || d.cfg.Resolver != net.DefaultResolver || d.cfg.ID == nil || d.cfg.Logger == nil {
		t.Fatalf("defaults %+v", d.cfg)
	}
	if d, err := New(Config{Host: "tandem", Port: 7946}); err != nil || d.cfg.Network != "ip" {
		t.Fatalf("Host defaults: %v %+v", err, d)
	}
}

// One Discovery serves concurrent calls.
func TestConcurrentCalls(t *testing.T) {
	s := startDNS(t)
	s.setSRV(t, srvName, "n1.test:1", "n2.test:1")
	d := newDisc(t, s, Config{SRV: srvName})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if peers, err := d.Peers(t.Context()); err != nil || len(peers) != 2 {
					t.Errorf("%v %v", peers, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
