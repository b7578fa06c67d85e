package clusterapp

import (
	"io"
	"strings"
	"testing"

	"github.com/tandemsession/tandem/buddy"
)

func TestMembershipFlag(t *testing.T) {
	plain := Config{Elsewhere: map[string]Elsewhere{"memberlist": {Path: "examples/cluster/memberlist"}}}
	if err := plain.membership("static", nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	// No source directory: the command to run instead.
	err := plain.membership("memberlist", []string{"-membership", "memberlist", "-demo"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cd examples/cluster/memberlist && go run . -membership memberlist -demo") {
		t.Fatalf("memberlist on the plain command: %v", err)
	}
	if err := plain.membership("nope", nil, io.Discard); err == nil {
		t.Fatal("an unknown membership was accepted")
	}
	withML := Config{Memberships: map[string]Membership{"memberlist": func(Node, *buddy.Config) error { return nil }}}
	if err := withML.membership("memberlist", nil, io.Discard); err != nil {
		t.Fatal(err)
	}
}

// TestChildMembership: a node child takes its membership and gossip
// addresses from its environment; static sets nothing.
func TestChildMembership(t *testing.T) {
	var got Node
	cfg := Config{Memberships: map[string]Membership{"gossip": func(n Node, b *buddy.Config) error {
		got = n
		b.Membership = nil
		return nil
	}}}
	key := make([]byte, buddy.ClusterKeySize)
	var bcfg buddy.Config
	t.Setenv(envMembership, "static")
	if err := childMembership(cfg, "n1", key, nil, &bcfg); err != nil || got.ID != "" {
		t.Fatalf("static: %v, %+v", err, got)
	}
	t.Setenv(envMembership, "gossip")
	t.Setenv(envGossip, "127.0.0.1:3")
	t.Setenv(envGossipAll, "127.0.0.1:3,127.0.0.1:4")
	if err := childMembership(cfg, "n1", key, nil, &bcfg); err != nil {
		t.Fatal(err)
	}
	if got.ID != "n1" || got.Gossip != "127.0.0.1:3" || len(got.GossipPeers) != 2 {
		t.Fatalf("node %+v", got)
	}
	t.Setenv(envGossip, "127.0.0.1:5")
	if err := childMembership(cfg, "n1", key, nil, &bcfg); err == nil {
		t.Fatal("a gossip address not among every node's was accepted")
	}
	t.Setenv(envMembership, "other")
	if err := childMembership(cfg, "n1", key, nil, &bcfg); err == nil {
		t.Fatal("a membership the command does not offer was applied")
	}
}
