// Command memberlist is Tandem's history checker (bench/chaos) with one
// more membership for its nodes: hashicorp/memberlist, through
// buddy/memberlist. It is a module of its own so that Tandem's root module
// does not depend on memberlist; everything else, flags and output, is
// bench/chaos's.
//
//	go run . -membership memberlist -scenario kill9
//	go run . -membership memberlist -scenario kill9,rolling-restart -runs 5
//
// With -membership memberlist, each node gets a gossip port of its own
// (reserved by the driver like its other ports, the same in every
// incarnation of the node) and joins through every node's gossip address,
// its own included: the first node up starts the cluster alone, a later
// or restarted one joins whichever nodes run. Gossip goes straight between
// the nodes, not through the scenarios' proxies: the network faults cut
// the replication links only. -membership static (the default) runs the
// nodes as bench/chaos does.
package main

import (
	"os"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/tandemsession/tandem/bench/internal/chaos"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/memberlist"
)

func main() {
	os.Exit(chaos.Main(chaos.Config{Memberships: map[string]chaos.Membership{"memberlist": onMemberlist}}))
}

// onMemberlist sets a node's membership to memberlist on its gossip port,
// joining through every node's.
func onMemberlist(n chaos.Node, bcfg *buddy.Config) error {
	mem, err := memberlist.New(memberlist.Config{
		Preset:     memberlist.Local,
		BindAddr:   n.Gossip,
		Join:       n.GossipPeers,
		ClusterKey: n.ClusterKey,
		Logger:     n.Logger,
		Tune:       tune,
	})
	if err != nil {
		return err
	}
	bcfg.Membership = mem
	return nil
}

// tune shortens memberlist's Local preset (a probe a second, suspicion
// for 3 s at least) towards the static membership's defaults
// (buddy.Config: PingInterval 250 ms, DeadAfter 1.5 s), so that a
// scenario's schedule (kill, wait twice DeadAfter, restart) means about the
// same on either membership: a probe every 500 ms, answered within 250 ms
// (the machine is loaded: Lifeguard stretches both when this node is slow
// itself), a suspect declared dead after 1.5 s (3 probe intervals, with 3
// nodes), gossip every 50 ms.
func tune(c *ml.Config) {
	c.ProbeInterval, c.ProbeTimeout = 500*time.Millisecond, 250*time.Millisecond
	c.SuspicionMult = 3
	c.GossipInterval = 50 * time.Millisecond
}
