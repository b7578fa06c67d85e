package chaos

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/tandemsession/tandem/buddy"
)

// Node is what a Membership learns of the node child it sets up.
type Node struct {
	// ID is the node's ID (n1, n2, ...).
	ID string
	// Peers is where this node dials each node for replication, this one
	// included (through the scenario's proxies when it has them): the
	// static membership's list.
	Peers []buddy.Peer
	// Gossip is this node's gossip address on 127.0.0.1, the same in
	// every incarnation of the node. The driver reserved its port, TCP
	// and UDP, below the kernel's ephemeral range, and releases it just
	// before the first start: the membership binds it itself.
	Gossip string
	// GossipPeers are every node's gossip address, this one's included,
	// in ID order: whom to join through. The nodes not running refuse.
	GossipPeers []string
	// ClusterKey is the run's cluster key (buddy.Config.ClusterKeys[0]).
	ClusterKey []byte
	// Logger is the node's log.
	Logger *slog.Logger
}

// Membership sets up how a node child learns who is in the cluster: it
// fills in bcfg (bcfg.Membership, typically) for node n. It runs in the
// child, before buddy.New.
type Membership func(n Node, bcfg *buddy.Config) error

// static is the membership every command has: buddy.Config.Peers.
const static = "static"

// gossips reports whether membership name needs a gossip port per node:
// every one but static does.
func gossips(name string) bool { return name != "" && name != static }

// usage is the -membership flag's usage line.
func (cfg Config) usage() string {
	u := "how nodes learn their peers: static (buddy.Config.Peers)" + cfg.membershipNames()
	for _, name := range slices.Sorted(maps.Keys(cfg.Elsewhere)) {
		u += "; " + name + ": " + cfg.Elsewhere[name]
	}
	return u
}

// membershipNames lists the memberships besides static, for the flag's
// usage line.
func (cfg Config) membershipNames() string {
	names := slices.Sorted(maps.Keys(cfg.Memberships))
	if len(names) == 0 {
		return ""
	}
	return ", or " + strings.Join(names, ", ")
}

// validMembership checks -membership against the memberships this command
// offers.
func (cfg Config) validMembership(name string) error {
	if name == static {
		return nil
	}
	if _, ok := cfg.Memberships[name]; ok {
		return nil
	}
	if hint, ok := cfg.Elsewhere[name]; ok {
		return fmt.Errorf("-membership %s: this command offers static%s only (%s lives in a module of its own); run: %s", name, cfg.membershipNames(), name, hint)
	}
	return fmt.Errorf("-membership %q: unknown (this command offers static%s)", name, cfg.membershipNames())
}

// applyMembership fills in how the node learns its peers: static (the
// default) is buddy's static Peers list; another name is the Membership
// the command registered under it.
func applyMembership(cfg Config, c childConfig, log *slog.Logger, bcfg *buddy.Config) error {
	if c.membership == "" || c.membership == static {
		bcfg.Peers = c.peers
		return nil
	}
	m, ok := cfg.Memberships[c.membership]
	if !ok {
		return fmt.Errorf("membership %q: not offered by this command", c.membership)
	}
	n := Node{ID: c.id, Peers: c.peers, Gossip: c.gossip, GossipPeers: c.gossipPeers, ClusterKey: c.keys.cluster, Logger: log}
	if err := m(n, bcfg); err != nil {
		return fmt.Errorf("membership %s: %w", c.membership, err)
	}
	return nil
}
