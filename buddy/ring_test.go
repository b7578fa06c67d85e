package buddy

import (
	"context"
	"net"
	"sync"
	"testing"
)

func TestSingleNodeRunsAlone(t *testing.T) {
	ms := cluster(t, 1, fastTimers)
	u := &browser{t: t}
	if rec := u.do(ms[0], "/set?k=v"); rec.Code != 200 {
		t.Fatalf("code %d", rec.Code)
	}
	if st := ms[0].node.Stats(); st.Buddy != "" || st.RecordsSent != 0 {
		t.Fatalf("alone: %+v", st)
	}
}

// staticDiscovery is a Discovery whose answer the test changes.
type staticDiscovery struct {
	mu    sync.Mutex
	peers []Peer
}

func (d *staticDiscovery) Peers(context.Context) ([]Peer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Peer(nil), d.peers...), nil
}

func (d *staticDiscovery) set(p []Peer) {
	d.mu.Lock()
	d.peers = p
	d.mu.Unlock()
}

func TestDiscoveryFeedsThePeerList(t *testing.T) {
	ln1, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	p1 := Peer{ID: "n1", Addr: ln1.Addr().String()}
	p2 := Peer{ID: "n2", Addr: ln2.Addr().String()}
	d1 := &staticDiscovery{peers: []Peer{p1}}
	d2 := &staticDiscovery{peers: []Peer{p1, p2}}
	base := func(id string, ln net.Listener, d Discovery) Config {
		c := Config{ID: id, Listener: ln, ClusterKeys: [][]byte{testClusterKey}, Discovery: d}
		fastTimers(&c)
		c.DiscoveryInterval = 20e6
		return c
	}
	a := startMember(t, base("n1", ln1, d1))
	b := startMember(t, base("n2", ln2, d2))
	// n1 does not know n2 until discovery says so: n2's pings are refused.
	if a.node.alive("n2") {
		t.Fatal("n1 accepted an undiscovered peer")
	}
	d1.set([]Peer{p1, p2})
	waitFor(t, "n1 discovers n2", func() bool { return a.node.alive("n2") && b.node.alive("n1") && a.node.sender.buddy().ID == "n2" })
	u := &browser{t: t}
	u.do(a, "/set?k=v")
	sameCopy(t, a, b, u.id)
	// Gone from discovery: out of the ring.
	d1.set([]Peer{p1})
	waitFor(t, "n1 forgets n2", func() bool { return a.node.Stats().Buddy == "" })
}

func TestPresetsAreValid(t *testing.T) {
	for name, c := range map[string]Config{"lan": DefaultLANConfig(), "wan": DefaultWANConfig()} {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		c.ID, c.Listener, c.ClusterKeys = "n1", ln, [][]byte{testClusterKey}
		n, err := New(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n.Close()
	}
}
