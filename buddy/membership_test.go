package buddy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/tandemsession/tandem/internal/faultnet"
)

// rings returns, for every live member, its ring: the buddy it computes
// for every member.
func rings(ms []*member) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		if m.dead() {
			continue
		}
		var r []string
		for _, o := range ms {
			r = append(r, o.node.ID()+">"+m.node.view.buddyOf(o.node.ID()))
		}
		out[m.node.ID()] = fmt.Sprint(r)
	}
	return out
}

// agreed reports whether every live member computes the same ring.
func agreed(ms []*member) bool {
	var first string
	for _, r := range rings(ms) {
		if first == "" {
			first = r
		}
		if r != first {
			return false
		}
	}
	return true
}

// TestOneWayPartitionKeepsTheRingAgreed: n1 cannot reach n2 (n2 still
// reaches n1). The indirect probes through n3 and n4 keep n2 alive on n1,
// so every node keeps the same ring and nobody is dead.
func TestOneWayPartitionKeepsTheRingAgreed(t *testing.T) {
	ms, fn := faultyCluster(t, 4, fastTimers)
	fn.Set("n1", "n2", faultnet.Cut)
	defer fn.Heal()
	// Many times DeadAfter: n1's direct pings of n2 all fail meanwhile.
	for range 12 {
		time.Sleep(ms[0].cfg.DeadAfter)
		for _, m := range ms {
			for _, o := range ms {
				if o != m && !m.node.alive(o.node.ID()) {
					t.Fatalf("%s took %s out of the ring: %v", m.node.ID(), o.node.ID(), m.node.Peers())
				}
			}
		}
		if !agreed(ms) {
			t.Fatalf("rings differ: %v", rings(ms))
		}
	}
}

// TestDeadRumourSpreads: a node killed is found dead by the nodes that
// probe it and the others learn it from them: the ring agrees.
func TestDeadRumourSpreads(t *testing.T) {
	ms := cluster(t, 8, fastTimers)
	ms[3].kill()
	waitFor(t, "every node takes n4 out", func() bool {
		for _, m := range ms {
			if !m.dead() && m.node.alive("n4") {
				return false
			}
		}
		return agreed(ms)
	})
}

// TestProbeWorkIsBounded: with 12 nodes, a node sends about 5 pings a
// round (2 neighbours and 3 random peers), not 11: the work per node does
// not grow with the cluster.
func TestProbeWorkIsBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("12 nodes under the race detector on 2 shared cores miss their ping timeouts")
	}
	const n = 12
	ms := cluster(t, n, func(c *Config) {
		fastTimers(c)
		// 12 nodes share the test's 2 cores: slower than fastTimers,
		// so that no node is found dead for being slow.
		c.PingInterval, c.SuspectAfter, c.DeadAfter = 100*time.Millisecond, time.Second, 2*time.Second
	})
	before := make([]uint64, n)
	rounds := make([]uint64, n)
	for i, m := range ms {
		before[i], rounds[i] = m.node.Stats().MembershipMessages, m.node.rounds.Load()
	}
	waitFor(t, "20 rounds", func() bool { return ms[0].node.rounds.Load() >= rounds[0]+20 })
	var per []float64
	for i, m := range ms {
		msgs := m.node.Stats().MembershipMessages - before[i]
		r := m.node.rounds.Load() - rounds[i]
		per = append(per, float64(msgs)/float64(r))
	}
	// 5 a round, and the probes of a peer that was slow to answer (probed
	// again every round until it does, and through 3 others).
	if worst := slices.Max(per); worst > 8 {
		t.Fatalf("a node sent %.1f membership messages a round (all-to-all is %d): %v", worst, n-1, per)
	}
	if !agreed(ms) {
		t.Fatalf("rings differ: %v", rings(ms))
	}
}

// fixedMembership is a membership layer that reports a fixed list of
// members, all alive, and never a change.
type fixedMembership struct{ members []Member }

func (f *fixedMembership) Join(context.Context, Member, func()) error { return nil }
func (f *fixedMembership) Members() []Member                          { return f.members }
func (f *fixedMembership) Leave(context.Context) error                { return nil }
func (f *fixedMembership) Close() error                               { return nil }

// TestMembershipPeerTakenForDeadComesBack: with Config.Membership, a peer
// this node took for dead itself (its replication failed: it had just
// started and did not know this node yet) while the layer reports it
// alive is alive again once it answers a ping; the layer, which saw no
// failure, sends no change that would bring it back.
func TestMembershipPeerTakenForDeadComesBack(t *testing.T) {
	lns := make([]net.Listener, 2)
	mem := &fixedMembership{}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		mem.members = append(mem.members, Member{Peer: Peer{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String()}, State: Alive})
	}
	var ms []*member
	for i, ln := range lns {
		cfg := Config{ID: mem.members[i].ID, Listener: ln, ClusterKeys: [][]byte{testClusterKey}, Membership: mem}
		fastTimers(&cfg)
		ms = append(ms, startMember(t, cfg))
	}
	waitRing(t, ms)
	n1 := ms[0].node
	n1.markDown("n2")
	if n1.alive("n2") {
		t.Fatal("n2 still in n1's ring after markDown")
	}
	waitFor(t, "n2 back in n1's ring", func() bool { return n1.alive("n2") && n1.Stats().Buddy == "n2" })
}
