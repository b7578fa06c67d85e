package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// The environment of a node child. The driver sets it when it re-executes
// itself; a person never does. The child's application listener is file
// descriptor 3, its replication listener 4.
const (
	envChild      = "TANDEM_CHAOS_CHILD"      // "node": run as a node
	envID         = "TANDEM_CHAOS_ID"         // node ID
	envPeers      = "TANDEM_CHAOS_PEERS"      // id=addr,id=addr,...: where this node dials each peer
	envMode       = "TANDEM_CHAOS_MODE"       // sync or async
	envApp        = "TANDEM_CHAOS_APP"        // gin or echo
	envMembership = "TANDEM_CHAOS_MEMBERSHIP" // static, or a name in Config.Memberships
	envGossip     = "TANDEM_CHAOS_GOSSIP"     // this node's gossip address (not static)
	envGossipAll  = "TANDEM_CHAOS_GOSSIP_ALL" // addr,addr,...: every node's gossip address (not static)
	envLog        = "TANDEM_CHAOS_LOG"        // slog level of the node's log on stderr
	envKeys       = "TANDEM_CHAOS_KEYS"       // hex: cluster key, cookie hash key, cookie block key (32 bytes each)
)

// runKeys are the cluster key and cookie keys of one run, drawn afresh for
// every run: two drivers on one machine (or a later run reusing a port an
// earlier one's node still dials) then cannot talk to each other's nodes,
// whose messages fail authentication instead of joining the wrong cluster.
type runKeys struct{ cluster, hash, block []byte }

func newRunKeys() runKeys {
	b := make([]byte, buddy.ClusterKeySize+64)
	rand.Read(b) // never fails (crypto/rand)
	n := buddy.ClusterKeySize
	return runKeys{cluster: b[:n], hash: b[n : n+32], block: b[n+32:]}
}

func (k runKeys) String() string {
	return hex.EncodeToString(slices.Concat(k.cluster, k.hash, k.block))
}

func parseRunKeys(s string) (runKeys, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != buddy.ClusterKeySize+64 {
		return runKeys{}, fmt.Errorf("%s: want %d hex-encoded bytes", envKeys, buddy.ClusterKeySize+64)
	}
	n := buddy.ClusterKeySize
	return runKeys{cluster: b[:n], hash: b[n : n+32], block: b[n+32:]}, nil
}

// routeCookie is core.CookieConfig.RouteName on every node: the balancer
// routes by it.
const routeCookie = "tandem_node"

// sessionCookie is core's default session cookie name.
const sessionCookie = "tandem"

// childConfig is what a node child reads from its environment.
type childConfig struct {
	id, mode, app, membership string
	peers                     []buddy.Peer
	gossip                    string
	gossipPeers               []string
	keys                      runKeys
	level                     slog.Level
}

func childConfigFromEnv() (childConfig, error) {
	c := childConfig{id: os.Getenv(envID), mode: os.Getenv(envMode), app: os.Getenv(envApp), membership: os.Getenv(envMembership)}
	peers, err := parsePeers(os.Getenv(envPeers))
	if err != nil {
		return c, err
	}
	c.peers = peers
	if gossips(c.membership) {
		c.gossip = os.Getenv(envGossip)
		c.gossipPeers = strings.Split(os.Getenv(envGossipAll), ",")
		if c.gossip == "" || !slices.Contains(c.gossipPeers, c.gossip) {
			return c, fmt.Errorf("%s and %s: this node's gossip address and every node's", envGossip, envGossipAll)
		}
	}
	if c.keys, err = parseRunKeys(os.Getenv(envKeys)); err != nil {
		return c, err
	}
	if err := c.level.UnmarshalText([]byte(os.Getenv(envLog))); err != nil {
		c.level = slog.LevelInfo
	}
	return c, nil
}

func formatPeers(peers []buddy.Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Addr
	}
	return strings.Join(parts, ",")
}

func parsePeers(s string) ([]buddy.Peer, error) {
	var peers []buddy.Peer
	for part := range strings.SplitSeq(s, ",") {
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%s: bad entry %q", envPeers, part)
		}
		peers = append(peers, buddy.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// runChild runs one node until SIGTERM, then stops it in the README's
// order: the app server's Shutdown, node.Shutdown, the manager's Close. A
// SIGKILL from the driver is a crash.
func runChild(cfg Config) error {
	gin.SetMode(gin.ReleaseMode)
	c, err := childConfigFromEnv()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: c.level}))
	httpLn, err := net.FileListener(os.NewFile(3, "http"))
	if err != nil {
		return fmt.Errorf("app listener: %w", err)
	}
	replLn, err := net.FileListener(os.NewFile(4, "repl"))
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("replication listener: %w", err)
	}
	bcfg := buddy.Config{ID: c.id, Listener: replLn, ClusterKeys: [][]byte{c.keys.cluster}, Logger: log}
	switch c.mode {
	case "", "sync":
		bcfg.Mode = buddy.Sync
	case "async":
		bcfg.Mode = buddy.Async
	default:
		return fmt.Errorf("mode %q: want sync or async", c.mode)
	}
	if err := applyMembership(cfg, c, log, &bcfg); err != nil {
		httpLn.Close()
		replLn.Close()
		return err
	}
	node, err := buddy.New(bcfg)
	if err != nil {
		httpLn.Close()
		replLn.Close()
		return fmt.Errorf("node %s: %w", c.id, err)
	}
	tap := newVersionTap(node)
	mgr, err := core.NewManager(core.Config{
		Keys:       []core.KeyPair{{Hash: c.keys.hash, Block: c.keys.block}},
		Replicator: tap,
		Cookie:     core.CookieConfig{RouteName: routeCookie},
		Logger:     log,
	})
	if err != nil {
		node.Close()
		httpLn.Close()
		return fmt.Errorf("manager: %w", err)
	}
	a := &app{id: c.id, node: node, tap: tap, mgr: mgr}
	var h http.Handler
	switch c.app {
	case "", "gin":
		h = a.ginHandler()
	case "echo":
		h = a.echoHandler()
	default:
		return fmt.Errorf("app %q: want gin or echo", c.app)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(httpLn) }()
	log.Info("chaos: node up", "app", c.app, "mode", bcfg.Mode.String(), "membership", c.membership, "pid", os.Getpid())
	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc:
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	log.Info("chaos: stopping", "sessions", mgr.Len())
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("app server shutdown: %w", err))
	}
	log.Info("chaos: app server closed")
	if err := node.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("node shutdown: %w", err))
	}
	if err := mgr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("manager close: %w", err))
	}
	log.Info("chaos: stopped")
	if err := errors.Join(errs...); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
