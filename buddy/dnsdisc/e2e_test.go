package dnsdisc

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// cluster runs real buddy nodes on loopback whose peers come from the
// test's DNS server, the way pods of a StatefulSet find each other: SRV
// records name the pods (n1.tandem.test), A records give their addresses,
// and a node dials a peer by name, resolved by the same server.
type cluster struct {
	t     *testing.T
	dns   *dnsServer
	res   *net.Resolver
	ports map[string]int // each node's replication port
	nodes map[string]*buddy.Node
}

// clusterKey is random per test process, so that no cluster of another test
// process on the machine can authenticate to these nodes.
var clusterKey = func() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return b
}()

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, dns: startDNS(t), ports: map[string]int{}, nodes: map[string]*buddy.Node{}}
	c.res = c.dns.resolver()
	t.Cleanup(func() {
		for _, n := range c.nodes {
			_ = n.Close()
		}
	})
	return c
}

// publish makes the SRV name list exactly ids, at their current ports.
func (c *cluster) publish(ids ...string) {
	var targets []string
	for _, id := range ids {
		targets = append(targets, id+".tandem.test:"+strconv.Itoa(c.ports[id]))
	}
	c.dns.setSRV(c.t, srvName, targets...)
}

// dial resolves a peer's host name with the test's server, as a pod's
// resolver would, and connects to it.
func (c *cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := c.res.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort(ips[0].String(), port))
}

// listen reserves node id's replication listener and its A record.
func (c *cluster) listen(id string) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.ports[id] = ln.Addr().(*net.TCPAddr).Port
	c.dns.setIPs(id+".tandem.test", "127.0.0.1")
	return ln
}

// start starts node id on ln with DNS discovery.
func (c *cluster) start(id string, ln net.Listener) *buddy.Node {
	disc, err := New(Config{SRV: srvName, Resolver: c.res, Timeout: time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := buddy.New(buddy.Config{
		ID: id, Listener: ln, ClusterKeys: [][]byte{clusterKey},
		Discovery: disc, DiscoveryInterval: 50 * time.Millisecond,
		PingInterval: 20 * time.Millisecond, SuspectAfter: 150 * time.Millisecond, DeadAfter: 300 * time.Millisecond,
		Dial: c.dial,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id] = n
	return n
}

// ring returns each running node's buddy, "n1>n2 n2>n1".
func (c *cluster) ring() string {
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s := ""
	for _, id := range ids {
		if s != "" {
			s += " "
		}
		s += fmt.Sprintf("%s>%s", id, c.nodes[id].Stats().Buddy)
	}
	return s
}

// waitRing waits until the ring is want and every running node is ready.
func (c *cluster) waitRing(want string) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, "ring "+want, func() bool {
		for _, n := range c.nodes {
			if !n.Ready() {
				return false
			}
		}
		return c.ring() == want
	})
}

func (c *cluster) state(of, peer string) buddy.State {
	for _, p := range c.nodes[of].Peers() {
		if p.ID == peer {
			return p.State
		}
	}
	return buddy.Unknown
}

func TestNodesJoinAndLeaveThroughDNS(t *testing.T) {
	c := newCluster(t)
	ln1, ln2, ln3 := c.listen("n1"), c.listen("n2"), c.listen("n3")

	// The first pod finds only itself: alone, and ready.
	c.publish("n1")
	n1 := c.start("n1", ln1)
	if !n1.Ready() || n1.Stats().Buddy != "" {
		t.Fatalf("n1 alone: ready %v, buddy %q", n1.Ready(), n1.Stats().Buddy)
	}

	// A second pod appears in DNS (publishNotReadyAddresses: before it is
	// ready) and starts: each finds the other.
	c.publish("n1", "n2")
	c.start("n2", ln2)
	c.waitRing("n1>n2 n2>n1")

	// A session written on n1 is backed up on n2, over a connection
	// dialed by name.
	m1, err := core.NewManager(core.Config{Keys: []core.KeyPair{{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}}, Replicator: n1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m1.Close() })
	app := m1.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := core.FromContext(r.Context()).Set("cart", []string{"tea"}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/cart/add", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("write on n1: %d %s", rec.Code, rec.Body)
	}
	if got := c.nodes["n2"].Stats().Backups; got != 1 {
		t.Fatalf("n2 holds %d backups, want 1", got)
	}

	c.publish("n1", "n2", "n3")
	c.start("n3", ln3)
	c.waitRing("n1>n2 n2>n3 n3>n1")

	// DNS fails (NXDOMAIN, then a server that does not answer): nobody
	// leaves; the nodes keep their peers.
	c.dns.remove(srvName)
	time.Sleep(200 * time.Millisecond) // several DiscoveryIntervals
	c.dns.set(srvName, dnsEntry{raw: silent})
	time.Sleep(1500 * time.Millisecond) // a discovery round that times out
	if got := c.ring(); got != "n1>n2 n2>n3 n3>n1" {
		t.Fatalf("ring after DNS failures: %s", got)
	}

	// n3's pod is deleted: it stops and its record goes. The others see
	// it leave; the ring closes over the gap.
	if err := c.nodes["n3"].Close(); err != nil {
		t.Fatal(err)
	}
	delete(c.nodes, "n3")
	c.publish("n1", "n2")
	c.waitRing("n1>n2 n2>n1")
	waitFor(t, 5*time.Second, "n3 left", func() bool {
		return c.state("n1", "n3") == buddy.Left && c.state("n2", "n3") == buddy.Left
	})

	// n3 comes back under the same name, at another address (a new pod IP,
	// here a new port), and joins again.
	ln3 = c.listen("n3")
	c.publish("n1", "n2", "n3")
	c.start("n3", ln3)
	c.waitRing("n1>n2 n2>n3 n3>n1")
	// n3's first pings can reach a node before its next DNS answer names
	// the new address (it asks at once, but in parallel): the address
	// follows shortly.
	want := "n3.tandem.test:" + strconv.Itoa(c.ports["n3"])
	for _, of := range []string{"n1", "n2"} {
		waitFor(t, 5*time.Second, of+" has n3's new address", func() bool {
			for _, p := range c.nodes[of].Peers() {
				if p.ID == "n3" {
					return p.Addr == want
				}
			}
			return false
		})
	}

	// n2 disappears from DNS while it still runs (its pod is gone from
	// the Service): n1 and n3 stop using it.
	c.publish("n1", "n3")
	waitFor(t, 5*time.Second, "n1 and n3 pair up", func() bool {
		return c.nodes["n1"].Stats().Buddy == "n3" && c.nodes["n3"].Stats().Buddy == "n1"
	})
	if got := c.state("n1", "n2"); got != buddy.Left {
		t.Fatalf("n1 sees n2 %v, want left", got)
	}
	// n1's new buddy got a full copy of its session.
	waitFor(t, 5*time.Second, "n3 backs n1's session up", func() bool { return c.nodes["n3"].Stats().Backups == 1 })
}

// Deployment-style discovery: address records and a fixed port, node IDs
// are the IP addresses. Loopback has one address per node here
// (127.0.0.2, 127.0.0.3), as pods have.
func TestNodesFindEachOtherByAddressRecords(t *testing.T) {
	s := startDNS(t)
	res := s.resolver()
	var ips []string
	var lns []net.Listener
	port := 0
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			t.Skipf("loopback address %s unavailable: %v", ip, err)
		}
		if port == 0 {
			port = ln.Addr().(*net.TCPAddr).Port
		}
		ips, lns = append(ips, ip), append(lns, ln)
	}
	s.setIPs("tandem.test", ips...)
	var nodes []*buddy.Node
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = n.Close()
		}
	})
	for i, ip := range ips {
		disc, err := New(Config{Host: "tandem.test.", Port: port, Network: "ip4", Resolver: res})
		if err != nil {
			t.Fatal(err)
		}
		n, err := buddy.New(buddy.Config{
			ID: netip.MustParseAddr(ip).String(), Listener: lns[i], ClusterKeys: [][]byte{clusterKey},
			Discovery: disc, DiscoveryInterval: 50 * time.Millisecond,
			PingInterval: 20 * time.Millisecond, SuspectAfter: 150 * time.Millisecond, DeadAfter: 300 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	waitFor(t, 10*time.Second, "the two nodes pair up", func() bool {
		return nodes[0].Ready() && nodes[1].Ready() &&
			nodes[0].Stats().Buddy == "127.0.0.3" && nodes[1].Stats().Buddy == "127.0.0.2"
	})
}
