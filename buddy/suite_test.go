package buddy_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/internal/clustertest"
)

// staticCluster runs the cluster suite on the static peer list: every
// node of the scenario gets a loopback address up front, all of them are
// in every node's Peers, and a node restarts on its address. The first
// listener of each address is held open from the start, and the ports lie
// below the kernel's ephemeral range: a port freed only between a node's
// runs is not taken meanwhile by another process's outgoing connection or
// 127.0.0.1:0 listener (another test's node answering under another key
// took the place of one of ours).
type staticCluster struct {
	key   []byte
	peers []buddy.Peer
	mu    sync.Mutex
	held  map[string]net.Listener // until the node's first start
}

func newStaticCluster(t testing.TB, spec clustertest.Spec) clustertest.Cluster {
	c := &staticCluster{key: spec.Key, held: map[string]net.Listener{}}
	for _, id := range spec.IDs {
		ln := listenLow(t)
		c.held[id] = ln
		c.peers = append(c.peers, buddy.Peer{ID: id, Addr: ln.Addr().String()})
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, ln := range c.held {
			ln.Close()
		}
	})
	return c
}

// listenLow listens on a free loopback port in 20000-31999.
func listenLow(t testing.TB) net.Listener {
	t.Helper()
	for range 1000 {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))); err == nil {
			return ln
		}
	}
	t.Fatal("no free port in 20000-31999")
	return nil
}

func (c *staticCluster) Config(t testing.TB, id string) buddy.Config {
	t.Helper()
	c.mu.Lock()
	ln, first := c.held[id]
	delete(c.held, id)
	c.mu.Unlock()
	if !first {
		var addr string
		for _, p := range c.peers {
			if p.ID == id {
				addr = p.Addr
			}
		}
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
	}
	return buddy.Config{ID: id, Listener: ln, Peers: c.peers, ClusterKeys: [][]byte{c.key},
		PingInterval: 25 * time.Millisecond, SuspectAfter: 200 * time.Millisecond, DeadAfter: 500 * time.Millisecond,
		ReplicationTimeout: 2 * time.Second}
}

// TestSuiteStatic runs the cluster suite on the static peer list, probed
// by the nodes themselves.
func TestSuiteStatic(t *testing.T) { clustertest.Run(t, newStaticCluster) }
