package buddy_test

import (
	"net"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/internal/clustertest"
)

// staticCluster runs the cluster suite on the static peer list: every
// node of the scenario gets a loopback address up front, all of them are
// in every node's Peers, and a node restarts on its address.
type staticCluster struct {
	key   []byte
	peers []buddy.Peer
}

func newStaticCluster(t testing.TB, spec clustertest.Spec) clustertest.Cluster {
	c := &staticCluster{key: spec.Key}
	for _, id := range spec.IDs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.peers = append(c.peers, buddy.Peer{ID: id, Addr: ln.Addr().String()})
		ln.Close() // until the node starts, its address refuses
	}
	return c
}

func (c *staticCluster) Config(t testing.TB, id string) buddy.Config {
	t.Helper()
	var addr string
	for _, p := range c.peers {
		if p.ID == id {
			addr = p.Addr
		}
	}
	var ln net.Listener
	var err error
	for range 100 { // a previous run's port may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen on %s's address: %v", id, err)
	}
	return buddy.Config{ID: id, Listener: ln, Peers: c.peers, ClusterKeys: [][]byte{c.key},
		PingInterval: 25 * time.Millisecond, SuspectAfter: 200 * time.Millisecond, DeadAfter: 500 * time.Millisecond,
		ReplicationTimeout: 2 * time.Second}
}

// TestSuiteStatic runs the cluster suite on the static peer list, probed
// by the nodes themselves.
func TestSuiteStatic(t *testing.T) { clustertest.Run(t, newStaticCluster) }
