package main

import (
	"bytes"
	"testing"

	"github.com/tandemsession/tandem/bench/internal/chaos"
	"github.com/tandemsession/tandem/buddy"
)

// TestOnMemberlist: the membership is set from the node's gossip address
// and the run's key; a bad key is refused before anything runs.
func TestOnMemberlist(t *testing.T) {
	n := chaos.Node{ID: "n1", Gossip: "127.0.0.1:20001", GossipPeers: []string{"127.0.0.1:20001", "127.0.0.1:20002"},
		ClusterKey: bytes.Repeat([]byte("k"), buddy.ClusterKeySize)}
	var bcfg buddy.Config
	if err := onMemberlist(n, &bcfg); err != nil {
		t.Fatal(err)
	}
	if bcfg.Membership == nil || bcfg.Peers != nil {
		t.Fatalf("membership %v, peers %v", bcfg.Membership, bcfg.Peers)
	}
	n.ClusterKey = n.ClusterKey[:5]
	if err := onMemberlist(n, &bcfg); err == nil {
		t.Fatal("a 5-byte cluster key was accepted")
	}
}
