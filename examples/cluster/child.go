package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// The environment that selects child mode and configures the node. The
// parent sets it; a person never does.
const (
	envNodeID     = "TANDEM_CLUSTER_NODE" // set: run as node with this ID
	envHTTPAddr   = "TANDEM_CLUSTER_HTTP"
	envReplAddr   = "TANDEM_CLUSTER_REPL"
	envPeers      = "TANDEM_CLUSTER_PEERS" // id=addr,id=addr,...
	envClusterKey = "TANDEM_CLUSTER_KEY"   // hex, 32 bytes
	envHashKey    = "TANDEM_CLUSTER_HASH_KEY"
	envBlockKey   = "TANDEM_CLUSTER_BLOCK_KEY"
	envMode       = "TANDEM_CLUSTER_MODE"      // sync or async
	envLogLevel   = "TANDEM_CLUSTER_LOG_LEVEL" // debug, info, warn, error
)

// maxDemoAttributes lets the demo's writers use a new key for every write
// (the default limit is 256 keys per session).
const maxDemoAttributes = 8192

// runChild runs one node until SIGTERM or SIGINT, then drains it.
func runChild(id string) error {
	gin.SetMode(gin.ReleaseMode)
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv(envLogLevel))); err != nil {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	peers, err := parsePeers(os.Getenv(envPeers))
	if err != nil {
		return err
	}
	clusterKey, err := hexEnv(envClusterKey)
	if err != nil {
		return err
	}
	hashKey, err := hexEnv(envHashKey)
	if err != nil {
		return err
	}
	blockKey, err := hexEnv(envBlockKey)
	if err != nil {
		return err
	}
	mode := buddy.Sync
	if os.Getenv(envMode) == "async" {
		mode = buddy.Async
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := nodeapp.Config{
		ID:         id,
		HTTPAddr:   os.Getenv(envHTTPAddr),
		ReplAddr:   os.Getenv(envReplAddr),
		Peers:      peers,
		Mode:       mode,
		ClusterKey: clusterKey,
		CookieKeys: core.KeyPair{Hash: hashKey, Block: blockKey},
		Logger:     log,
		Core:       func(c *core.Config) { c.Limits.MaxAttributes = maxDemoAttributes },
	}
	return nodeapp.Run(ctx, cfg, nil)
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

func formatPeers(peers []buddy.Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Addr
	}
	return strings.Join(parts, ",")
}

func hexEnv(name string) ([]byte, error) {
	b, err := hex.DecodeString(os.Getenv(name))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}
