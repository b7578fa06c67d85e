package clusterapp

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/examples/node"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// envNodeID selects child mode: the parent sets it, with examples/node's
// environment (node.EnvID, node.EnvPeers, node.EnvClusterKey, ...), to run
// one node; a person never does.
const envNodeID = "TANDEM_CLUSTER_NODE"

// maxDemoAttributes lets the demo's writers use a new key for every write
// (the default limit is 256 keys per session).
const maxDemoAttributes = 8192

// runChild runs one node, configured from the environment exactly as
// examples/node's command is (but for a membership of app's, set from
// TANDEM_CLUSTER_MEMBERSHIP), until SIGTERM or SIGINT, then drains it.
func runChild(app Config) error {
	gin.SetMode(gin.ReleaseMode)
	cfg, err := node.FromArgs(nil, os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	cfg.Core = func(c *core.Config) { c.Limits.MaxAttributes = maxDemoAttributes }
	var mb buddy.Config
	if err := childMembership(app, cfg.ID, cfg.ClusterKeys[0], cfg.Logger.With("node", cfg.ID), &mb); err != nil {
		return err
	}
	if mb.Membership != nil {
		cfg.Buddy = func(b *buddy.Config) { b.Membership, b.Peers = mb.Membership, nil }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return node.Run(ctx, nodeapp.WithBenchRoutes(cfg), nil)
}
