package buddy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// readyNode starts a node on ln with peers and fast timers, and a manager
// bound to it; both stop when the test ends.
// clusterKey is random per test process, so that no cluster of another test
// process on the machine can authenticate to these nodes.
var clusterKey = func() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return b
}()

func readyNode(t *testing.T, id string, ln net.Listener, peers []buddy.Peer) *buddy.Node {
	t.Helper()
	n, err := buddy.New(buddy.Config{ID: id, Listener: ln, Peers: peers, ClusterKeys: [][]byte{clusterKey},
		PingInterval: 20 * time.Millisecond, SuspectAfter: 100 * time.Millisecond, DeadAfter: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}}, Replicator: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(); _ = n.Close() })
	return n
}

func loopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadyAloneWithoutPeers(t *testing.T) {
	n := readyNode(t, "n1", loopback(t), nil)
	if !n.Ready() {
		t.Fatal("a node with no peer configured is not ready")
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n.Ready() {
		t.Fatal("ready after Shutdown")
	}
}

func TestReadyOnceItHasABuddy(t *testing.T) {
	ln1, ln2 := loopback(t), loopback(t)
	peers := []buddy.Peer{{ID: "n1", Addr: ln1.Addr().String()}, {ID: "n2", Addr: ln2.Addr().String()}}
	ln2.Close() // n2 is not up yet: its address refuses
	n1 := readyNode(t, "n1", ln1, peers)
	if n1.Ready() {
		t.Fatal("ready with its only peer down")
	}
	ln2, err := net.Listen("tcp", peers[1].Addr)
	if err != nil {
		t.Skipf("n2's port was taken meanwhile: %v", err)
	}
	n2 := readyNode(t, "n2", ln2, peers)
	if !n2.Ready() {
		t.Fatal("n2 not ready once New returned, with n1 up")
	}
	eventually(t, "n1 ready", n1.Ready)

	// A draining node is not ready; its peer, alone but with a peer
	// configured, is not either.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n2.Ready() {
		t.Fatal("ready after Shutdown")
	}
	eventually(t, "n1 not ready without its buddy", func() bool { return !n1.Ready() })
}

func TestStateText(t *testing.T) {
	for s := buddy.Unknown; s <= buddy.Left; s++ {
		b, err := s.MarshalText()
		if err != nil || string(b) != s.String() {
			t.Fatalf("%d: MarshalText %q %v, String %q", s, b, err, s)
		}
		var back buddy.State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("%s: UnmarshalText %v %v", b, back, err)
		}
	}
	if _, err := buddy.State(42).MarshalText(); err == nil {
		t.Fatal("State(42) marshalled")
	}
	if buddy.State(42).String() != "State(42)" {
		t.Fatalf("State(42).String() = %q", buddy.State(42).String())
	}
	var s buddy.State
	if err := s.UnmarshalText([]byte("zombie")); err == nil {
		t.Fatal("unknown name accepted")
	}

	// In JSON, a PeerStatus shows its state by name, and reads back.
	st := buddy.Stats{Peers: []buddy.PeerStatus{{Peer: buddy.Peer{ID: "n2"}, State: buddy.Alive}}}
	b, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(b), `"State":"alive"`) {
		t.Fatalf("JSON %s %v", b, err)
	}
	var back buddy.Stats
	if err := json.Unmarshal(b, &back); err != nil || back.Peers[0].State != buddy.Alive {
		t.Fatalf("read back %+v %v", back.Peers, err)
	}
}
