package dnsdisc_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/dnsdisc"
)

// headless answers as Kubernetes' DNS does for the headless Service
// "tandem" of a three-pod StatefulSet with a port named "repl".
type headless struct{}

func (headless) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	if name != "_repl._tcp.tandem.default.svc.cluster.local." {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return name, []*net.SRV{
		{Target: "tandem-1.tandem.default.svc.cluster.local.", Port: 7946, Weight: 33},
		{Target: "tandem-0.tandem.default.svc.cluster.local.", Port: 7946, Weight: 33},
		{Target: "tandem-2.tandem.default.svc.cluster.local.", Port: 7946, Weight: 33},
	}, nil
}

func (headless) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("10.244.1.9")}, nil
}

// The peers of a StatefulSet's pod, from the SRV records of its headless
// Service: IDs are the pod names, addresses their DNS names.
func Example() {
	disc, err := dnsdisc.New(dnsdisc.Config{
		SRV:      "_repl._tcp.tandem.default.svc.cluster.local.",
		Resolver: headless{}, // default net.DefaultResolver
	})
	if err != nil {
		log.Fatal(err)
	}
	peers, err := disc.Peers(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range peers {
		fmt.Println(p.ID, p.Addr)
	}

	// A name that does not exist is ErrNoRecords: the node keeps the
	// peers it had.
	missing, _ := dnsdisc.New(dnsdisc.Config{SRV: "_repl._tcp.other.default.svc.cluster.local.", Resolver: headless{}})
	_, err = missing.Peers(context.Background())
	fmt.Println(errors.Is(err, dnsdisc.ErrNoRecords))
	// Output:
	// tandem-0 tandem-0.tandem.default.svc.cluster.local:7946
	// tandem-1 tandem-1.tandem.default.svc.cluster.local:7946
	// tandem-2 tandem-2.tandem.default.svc.cluster.local:7946
	// true
}

// A Deployment's pods, from the A records of a headless Service and a
// fixed port: IDs are the pod IPs, which each pod sets as its own ID
// (TANDEM_NODE_ID from the downward API's status.podIP).
func ExampleConfig_host() {
	disc, err := dnsdisc.New(dnsdisc.Config{
		Host:     "tandem.default.svc.cluster.local.",
		Port:     7946,
		Resolver: headless{},
	})
	if err != nil {
		log.Fatal(err)
	}
	peers, err := disc.Peers(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(peers)
	// Output:
	// [{10.244.0.5 10.244.0.5:7946 } {10.244.1.9 10.244.1.9:7946 }]
}

// Wiring: the node asks DNS every DiscoveryInterval; its own ID is what
// DNS names it (here the pod name).
func ExampleNew() {
	disc, err := dnsdisc.New(dnsdisc.Config{SRV: "_repl._tcp.tandem.default.svc.cluster.local."})
	if err != nil {
		log.Fatal(err)
	}
	cfg := buddy.Config{
		ID:                "tandem-0", // metadata.name, from the downward API
		ListenAddr:        ":7946",
		ClusterKeys:       [][]byte{make([]byte, buddy.ClusterKeySize)}, // from your secret store
		Discovery:         disc,
		DiscoveryInterval: 5 * time.Second,
	}
	_ = cfg // buddy.New(cfg)
}
