// Command memberlist is the cluster example (examples/cluster) with its
// nodes on hashicorp/memberlist, through buddy/memberlist: each node gossips
// on a loopback port of its own (printed at start) and joins through every
// node's, so the first one up starts the cluster and a restarted one joins
// whichever run. It is a module of its own so that Tandem's root module
// does not depend on memberlist; the flags, the balancer, the dashboard
// and the demo are examples/cluster's.
//
//	go run .                       # http://127.0.0.1:8080/ and /dashboard
//	go run . -demo                 # the scripted failover, on memberlist
//	go run ./examples/cluster -membership memberlist   # the same, from the repository's root
//
// -membership defaults to memberlist here; -membership static runs the
// nodes as examples/cluster does.
package main

import (
	"os"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/memberlist"
	"github.com/tandemsession/tandem/examples/cluster/internal/clusterapp"
)

func main() {
	os.Exit(clusterapp.Main(clusterapp.Config{
		Memberships: map[string]clusterapp.Membership{"memberlist": onMemberlist},
		Default:     "memberlist",
	}))
}

// onMemberlist sets a node's membership to memberlist on its gossip
// address, joining through every node's.
func onMemberlist(n clusterapp.Node, bcfg *buddy.Config) error {
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
// for 3 s at least) towards the static membership's failure detection
// (buddy.Config's DeadAfter, 1.5 s), so that the dashboard shows a killed
// node dead within about 2 s: a probe every 500 ms, answered within
// 250 ms, a suspect declared dead after 1.5 s, gossip every 50 ms.
func tune(c *ml.Config) {
	c.ProbeInterval, c.ProbeTimeout = 500*time.Millisecond, 250*time.Millisecond
	c.SuspicionMult = 3
	c.GossipInterval = 50 * time.Millisecond
}
