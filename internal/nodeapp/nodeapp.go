// Package nodeapp is the cluster node of Tandem's examples and benchmarks:
// the copyable node of examples/node (a buddy.Node, a core.Manager and the
// demo shop on Gin, with /healthz, /readyz, /api/stats and the graceful
// stop) plus the load-test routes the cluster demo and the load driver
// drive: /bench/read, /bench/write and /bench/get.
//
// Run does not change Gin's global mode; call gin.SetMode(gin.ReleaseMode)
// in main to silence Gin's debug output.
package nodeapp

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/examples/node"
)

// RouteCookie is the plain cookie, written by core whenever a session's
// owner changes, that names the node owning the session. Load balancers
// route by it.
const RouteCookie = core.DefaultRouteCookie

// NodeHeader is the response header naming the node that served a request.
const NodeHeader = node.NodeHeader

// NewSessionHeader is set to "1" on the answers of the /bench routes when
// the request brought no valid session: its cookie was missing, or named a
// session no node held. A load driver spots lost sessions with it.
const NewSessionHeader = "X-Tandem-New-Session"

// SessionInfo is the answer of GET /api/session.
type SessionInfo = node.SessionInfo

// StatsInfo is the answer of GET /api/stats.
type StatsInfo = node.StatsInfo

// Config configures one node. ID, HTTPAddr (or HTTPListener), ReplAddr (or
// ReplListener), ClusterKey and CookieKeys are required.
type Config struct {
	// ID names the node; IDs order the buddy ring.
	ID string
	// HTTPAddr is the application's listen address (host:port).
	HTTPAddr string
	// ReplAddr is the replication listener's address (host:port).
	ReplAddr string
	// HTTPListener, when set, is used instead of listening on HTTPAddr.
	// Run closes it.
	HTTPListener net.Listener
	// ReplListener, when set, is used instead of listening on ReplAddr.
	// Run closes it.
	ReplListener net.Listener
	// Peers is the static cluster, this node included or not.
	Peers []buddy.Peer
	// Mode is buddy.Sync (default) or buddy.Async.
	Mode buddy.Mode
	// ClusterKey authenticates and encrypts replication: 32 bytes, the
	// same on every node.
	ClusterKey []byte
	// CookieKeys sign and encrypt the session cookie: the same on every
	// node, so that any node reads any session's cookie.
	CookieKeys core.KeyPair
	// Logger receives the node's log records. Default: discarded.
	Logger *slog.Logger
	// ShutdownTimeout bounds the graceful stop (the app server's Shutdown
	// and the drain together). Default 20 seconds.
	ShutdownTimeout time.Duration
	// Buddy, when set, adjusts the buddy.Config before the node starts
	// (timers, compression, limits).
	Buddy func(*buddy.Config)
	// Core, when set, adjusts the core.Config before the manager starts
	// (limits, timeouts).
	Core func(*core.Config)
}

// Node returns the examples/node configuration that Run runs: cfg, with
// the load-test routes.
func (cfg Config) Node() node.Config {
	nc := node.Config{
		ID: cfg.ID, HTTPAddr: cfg.HTTPAddr, ReplAddr: cfg.ReplAddr,
		HTTPListener: cfg.HTTPListener, ReplListener: cfg.ReplListener,
		Peers: cfg.Peers, Mode: cfg.Mode, Logger: cfg.Logger, ShutdownTimeout: cfg.ShutdownTimeout,
		Buddy: cfg.Buddy, Core: cfg.Core, Routes: benchRoutes,
	}
	if cfg.ClusterKey != nil {
		nc.ClusterKeys = [][]byte{cfg.ClusterKey}
	}
	if cfg.CookieKeys.Hash != nil || cfg.CookieKeys.Block != nil {
		nc.CookieKeys = []core.KeyPair{cfg.CookieKeys}
	}
	return nc
}

// Run starts the node and serves until ctx ends; it then stops gracefully
// (examples/node's Run). ready, when not nil, is called once both
// listeners are up, with their addresses.
func Run(ctx context.Context, cfg Config, ready func(httpAddr, replAddr string)) error {
	return node.Run(ctx, cfg.Node(), ready)
}

// WithBenchRoutes returns cfg with the load-test routes added to its own.
func WithBenchRoutes(cfg node.Config) node.Config {
	own := cfg.Routes
	cfg.Routes = func(s *gin.RouterGroup) {
		if own != nil {
			own(s)
		}
		benchRoutes(s)
	}
	return cfg
}
