package clusterapp

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/tandemsession/tandem/buddy"
)

// Config is what a command built on Main adds to the example.
type Config struct {
	// Memberships are the membership implementations this command offers
	// besides static (buddy.Config.Peers), by the name -membership takes.
	// Each node of such a membership gets a gossip address of its own
	// (Node.Gossip).
	Memberships map[string]Membership
	// Default is -membership's default. Default "": static.
	Default string
	// Elsewhere gives, for a membership this command does not offer, the
	// source directory of the command that does (a module of its own):
	// -membership with that name runs "go run ." there with the same
	// arguments, or, when that directory or the go command is not there,
	// prints the command to run and fails.
	Elsewhere map[string]Elsewhere
}

// Elsewhere is the command that offers a membership.
type Elsewhere struct {
	// Dir is its source directory on this machine ("" when not known).
	Dir string
	// Path is its directory in Tandem's repository, for the message
	// printed when Dir is not there: examples/cluster/memberlist.
	Path string
}

// Node is what a Membership learns of the node child it sets up.
type Node struct {
	// ID is the node's ID (n1, n2, ...).
	ID string
	// Gossip is this node's gossip address on loopback, the same in every
	// incarnation of the node; the membership binds it (TCP and UDP).
	Gossip string
	// GossipPeers are every node's gossip address, this one's included:
	// whom to join through. The nodes not running refuse.
	GossipPeers []string
	// ClusterKey is the cluster key (buddy.Config.ClusterKeys[0]).
	ClusterKey []byte
	// Logger is the node's log.
	Logger *slog.Logger
}

// Membership sets up how a node child learns who is in the cluster: it
// fills in bcfg (bcfg.Membership, typically) for node n. It runs in the
// child, just before buddy.New.
type Membership func(n Node, bcfg *buddy.Config) error

// The environment of a node child for a membership other than static.
const (
	envMembership = "TANDEM_CLUSTER_MEMBERSHIP" // static, or a name in Config.Memberships
	envGossip     = "TANDEM_CLUSTER_GOSSIP"     // this node's gossip address
	envGossipAll  = "TANDEM_CLUSTER_GOSSIP_ALL" // addr,addr,...: every node's
)

const static = "static"

// gossips reports whether membership name needs a gossip address per
// node: every one but static does.
func gossips(name string) bool { return name != "" && name != static }

func (cfg Config) names() string {
	return strings.Join(slices.Concat([]string{static}, slices.Sorted(maps.Keys(cfg.Memberships))), ", ")
}

// membership checks -membership. For a membership of another command it
// replaces this process with "go run ." in that command's directory (it
// returns only if that fails), or returns an error telling the command to
// run.
func (cfg Config) membership(name string, args []string, stderr io.Writer) error {
	if name == static {
		return nil
	}
	if _, ok := cfg.Memberships[name]; ok {
		return nil
	}
	e, ok := cfg.Elsewhere[name]
	if !ok {
		return fmt.Errorf("-membership %q: unknown (this command offers %s)", name, cfg.names())
	}
	cmdline := "cd " + e.Path + " && go run . " + strings.Join(args, " ")
	goBin, err := exec.LookPath("go")
	if _, serr := os.Stat(filepath.Join(e.Dir, "go.mod")); e.Dir != "" && serr == nil && err == nil {
		fmt.Fprintf(stderr, "cluster: -membership %s is %s's (a module of its own): go run . there\n", name, e.Path)
		if err := os.Chdir(e.Dir); err != nil {
			return fmt.Errorf("-membership %s: %w; run: %s", name, err, cmdline)
		}
		err = syscall.Exec(goBin, append([]string{"go", "run", "."}, args...), os.Environ())
		return fmt.Errorf("-membership %s: exec go run: %w; run: %s", name, err, cmdline)
	}
	return fmt.Errorf("-membership %s lives in a module of its own (%s), whose source is not on this machine; in a checkout of github.com/tandemsession/tandem, run: %s", name, e.Path, cmdline)
}

// childMembership sets a node child's membership from its environment
// (nothing for static).
func childMembership(cfg Config, id string, clusterKey []byte, log *slog.Logger, bcfg *buddy.Config) error {
	name := os.Getenv(envMembership)
	if !gossips(name) {
		return nil
	}
	m, ok := cfg.Memberships[name]
	if !ok {
		return fmt.Errorf("membership %q: not offered by this command", name)
	}
	n := Node{ID: id, Gossip: os.Getenv(envGossip), GossipPeers: strings.Split(os.Getenv(envGossipAll), ","), ClusterKey: clusterKey, Logger: log}
	if n.Gossip == "" || !slices.Contains(n.GossipPeers, n.Gossip) {
		return fmt.Errorf("%s and %s: this node's gossip address and every node's", envGossip, envGossipAll)
	}
	if err := m(n, bcfg); err != nil {
		return fmt.Errorf("membership %s: %w", name, err)
	}
	bcfg.Peers = nil // the membership says who is in the cluster
	return nil
}
