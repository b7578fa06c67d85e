package memberlist

import (
	"context"
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/internal/clustertest"
)

// mlCluster runs the cluster suite on memberlist: the first node starts
// the cluster, each later one joins through the gossip addresses of the
// nodes started before it, and a node restarts on its gossip address.
type mlCluster struct {
	key    []byte
	gossip map[string]string // node ID -> gossip address of its last run
	order  []string          // node IDs in the order they first started
}

func newMLCluster(_ testing.TB, spec clustertest.Spec) clustertest.Cluster {
	return &mlCluster{key: spec.Key, gossip: map[string]string{}}
}

func (c *mlCluster) Config(t testing.TB, id string) buddy.Config {
	t.Helper()
	var join []string
	for _, o := range c.order {
		if o != id {
			join = append(join, c.gossip[o])
		}
	}
	bind := c.gossip[id] // a restart takes its previous address
	if bind == "" {
		bind = "127.0.0.1:0"
		c.order = append(c.order, id)
	}
	cfg := Config{Preset: Local, BindAddr: bind, Join: join, ClusterKey: c.key, Tune: fast}
	if os.Getenv("TANDEM_TEST_LOG") != "" { // debugging aid: memberlist's log on stderr
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("member", id)
	}
	mem, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return buddy.Config{ID: id, Listener: ln, ClusterKeys: [][]byte{c.key}, Membership: &addrNoter{mem, c, id}}
}

// addrNoter notes the gossip address its Membership bound once it joined,
// for the nodes started after it.
type addrNoter struct {
	*Membership
	c  *mlCluster
	id string
}

func (a *addrNoter) Join(ctx context.Context, self buddy.Member, changed func()) error {
	err := a.Membership.Join(ctx, self, changed)
	a.c.gossip[a.id] = a.Membership.Addr()
	return err
}

// TestSuiteMemberlist runs the cluster suite on memberlist.
func TestSuiteMemberlist(t *testing.T) { clustertest.Run(t, newMLCluster) }
