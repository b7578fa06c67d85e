package chaos

import (
	"net"
	"strings"
	"testing"

	"github.com/tandemsession/tandem/buddy"
)

func TestValidMembership(t *testing.T) {
	plain := Config{Elsewhere: map[string]string{"memberlist": "cd bench/chaos/memberlist && go run . -membership memberlist"}}
	if err := plain.validMembership("static"); err != nil {
		t.Fatal(err)
	}
	err := plain.validMembership("memberlist")
	if err == nil || !strings.Contains(err.Error(), "cd bench/chaos/memberlist && go run . -membership memberlist") {
		t.Fatalf("memberlist on the static command: %v", err)
	}
	if err := plain.validMembership("nope"); err == nil {
		t.Fatal("an unknown membership was accepted")
	}
	withML := Config{Memberships: map[string]Membership{"memberlist": func(Node, *buddy.Config) error { return nil }}}
	if err := withML.validMembership("memberlist"); err != nil {
		t.Fatal(err)
	}
}

// TestApplyMembership: static sets the peer list; another name calls its
// Membership with the node's gossip addresses and leaves Peers alone.
func TestApplyMembership(t *testing.T) {
	peers := []buddy.Peer{{ID: "n1", Addr: "127.0.0.1:1"}, {ID: "n2", Addr: "127.0.0.1:2"}}
	c := childConfig{id: "n1", membership: "static", peers: peers}
	var bcfg buddy.Config
	if err := applyMembership(Config{}, c, nil, &bcfg); err != nil || len(bcfg.Peers) != 2 {
		t.Fatalf("static: %v, peers %v", err, bcfg.Peers)
	}
	var got Node
	cfg := Config{Memberships: map[string]Membership{"gossip": func(n Node, b *buddy.Config) error { got = n; return nil }}}
	c.membership, c.gossip, c.gossipPeers = "gossip", "127.0.0.1:3", []string{"127.0.0.1:3", "127.0.0.1:4"}
	bcfg = buddy.Config{}
	if err := applyMembership(cfg, c, nil, &bcfg); err != nil {
		t.Fatal(err)
	}
	if got.ID != "n1" || got.Gossip != "127.0.0.1:3" || len(got.GossipPeers) != 2 || bcfg.Peers != nil {
		t.Fatalf("node %+v, peers %v", got, bcfg.Peers)
	}
	c.membership = "other"
	if err := applyMembership(cfg, c, nil, &bcfg); err == nil {
		t.Fatal("a membership the command does not offer was applied")
	}
}

// TestReserveGossipPort: the port is held for TCP and UDP until released,
// then free for both.
func TestReserveGossipPort(t *testing.T) {
	addr, held, err := reserveGossipPort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := net.Listen("tcp", addr); err == nil {
		t.Fatal("TCP bind of a reserved port succeeded")
	}
	if _, err := net.ListenPacket("udp", addr); err == nil {
		t.Fatal("UDP bind of a reserved port succeeded")
	}
	for _, f := range held {
		f.Close()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP after release: %v", err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP after release: %v", err)
	}
	pc.Close()
}
