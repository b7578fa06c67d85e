package main

import (
	"bytes"
	"testing"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/examples/cluster/internal/clusterapp"
)

// TestOnMemberlist: the membership is set from the node's gossip address
// and the cluster key; a bad key is refused before anything runs.
func TestOnMemberlist(t *testing.T) {
	n := clusterapp.Node{ID: "n1", Gossip: "127.0.0.1:20001", GossipPeers: []string{"127.0.0.1:20001", "127.0.0.1:20002"},
		ClusterKey: bytes.Repeat([]byte("k"), buddy.ClusterKeySize)}
	var bcfg buddy.Config
	if err := onMemberlist(n, &bcfg); err != nil {
		t.Fatal(err)
	}
	if bcfg.Membership == nil {
		t.Fatal("no membership set")
	}
	n.ClusterKey = n.ClusterKey[:5]
	if err := onMemberlist(n, &bcfg); err == nil {
		t.Fatal("a 5-byte cluster key was accepted")
	}
}
