// Package node is one Tandem cluster node you can copy: a buddy.Node, a
// core.Manager and a Gin application (the demo shop: log in, fill a cart)
// served with ginsession, configured by flags or the environment, with a
// health endpoint, a readiness endpoint and the graceful stop a deployment
// needs. Run one process per node (the command is cmd/tandem-node).
// Generate the three keys once for the whole cluster (openssl rand -hex 32,
// three times), keep them in your secret store and give every node the
// same three in its environment; then, on each node:
//
//	# with TANDEM_CLUSTER_KEY, TANDEM_COOKIE_HASH_KEY and TANDEM_COOKIE_BLOCK_KEY set
//	go run ./examples/node/cmd/tandem-node -id n1 -http 10.0.0.1:8080 -repl 10.0.0.1:7946 \
//		-peers n1=10.0.0.1:7946,n2=10.0.0.2:7946,n3=10.0.0.3:7946
//
// The peers come from -peers, a static list, or from DNS: -dns-srv names
// the SRV records of a port (node IDs are the targets' first labels: a
// StatefulSet's pod names), -dns-host a name whose A records (AAAA for an
// IPv6 -id) list the nodes at -dns-port (node IDs are the IP addresses);
// see package
// buddy/dnsdisc, and examples/kubernetes for manifests.
//
// Outside the session middleware the node answers GET /healthz (200 while
// the process serves: liveness), GET /readyz (200 once the node has joined
// the ring and holds a buddy, buddy.Node.Ready, and its DNS discovery, if
// any, has answered once; 503 before, and from the moment it starts
// stopping) and GET /api/stats (buddy.Stats as JSON).
//
// On SIGTERM (Run's context ends) the node stops in the order that keeps
// every session: it reports not ready, waits ShutdownDelay, then the app's
// http.Server.Shutdown (requests in flight finish), node.Shutdown (its
// sessions are handed to its buddy) and the manager's Close.
//
// Copy this directory into your project and replace app.go with your
// application; keep node.go and config.go. The cluster example
// (examples/cluster) runs its nodes with this package.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
)

// NodeHeader is the response header naming the node that served a request.
const NodeHeader = "X-Tandem-Node"

// Config configures one node. ID, HTTPAddr (or HTTPListener), ReplAddr (or
// ReplListener), ClusterKeys and CookieKeys are required; FromArgs fills
// a Config from flags and the environment.
type Config struct {
	// ID names the node; IDs order the buddy ring.
	ID string
	// Zone is the node's failure domain; a buddy in another zone is
	// preferred. Default "".
	Zone string
	// HTTPAddr is the application's listen address (host:port).
	HTTPAddr string
	// ReplAddr is the replication listener's address (host:port). Peers
	// dial this node at the address its entry in Peers gives.
	ReplAddr string
	// HTTPListener, when set, is used instead of listening on HTTPAddr.
	// Run closes it.
	HTTPListener net.Listener
	// ReplListener, when set, is used instead of listening on ReplAddr.
	// Run closes it.
	ReplListener net.Listener
	// Peers is the static cluster, this node included or not; with
	// Discovery, only the starting list.
	Peers []buddy.Peer
	// Discovery, when set, feeds the peer list (buddy.Config.Discovery),
	// for example a *dnsdisc.Discovery; FromArgs sets one for -dns-srv or
	// -dns-host. The node is not ready until it has answered once. Default
	// nil: the static Peers.
	Discovery buddy.Discovery
	// DiscoveryInterval is how often Discovery is asked. Default 10
	// seconds.
	DiscoveryInterval time.Duration
	// Mode is buddy.Sync (default) or buddy.Async.
	Mode buddy.Mode
	// ClusterKeys authenticate and encrypt replication: 32 bytes each, the
	// same on every node; the first seals, all open (rotation).
	ClusterKeys [][]byte
	// CookieKeys sign and encrypt the session cookie: the same on every
	// node, so that any node reads any session's cookie (a failover); the
	// first signs, all decode (rotation).
	CookieKeys []core.KeyPair
	// Logger receives the node's log records. Default: discarded.
	Logger *slog.Logger
	// ShutdownDelay is how long the node keeps serving, while /readyz
	// answers 503, before it stops: time for a balancer that polls
	// readiness to stop sending it requests. Default 0.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the graceful stop (the app server's Shutdown
	// and the drain together). Default 20 seconds.
	ShutdownTimeout time.Duration
	// Buddy, when set, adjusts the buddy.Config before the node starts
	// (timers, compression, limits).
	Buddy func(*buddy.Config)
	// Core, when set, adjusts the core.Config before the manager starts
	// (limits, timeouts, cookie attributes).
	Core func(*core.Config)
	// Routes, when set, adds routes behind the session middleware, next to
	// the demo application's.
	Routes func(sessions *gin.RouterGroup)
}

func (cfg *Config) validate() error {
	switch {
	case cfg.ID == "":
		return errors.New("node: ID is required")
	case cfg.HTTPAddr == "" && cfg.HTTPListener == nil:
		return errors.New("node: HTTPAddr or HTTPListener is required")
	case cfg.ReplAddr == "" && cfg.ReplListener == nil:
		return errors.New("node: ReplAddr or ReplListener is required")
	case len(cfg.ClusterKeys) == 0:
		return errors.New("node: ClusterKeys are required")
	case len(cfg.CookieKeys) == 0:
		return errors.New("node: CookieKeys are required")
	}
	return nil
}

// Run starts the node and serves until ctx ends; it then stops gracefully
// (see the package documentation), within ShutdownDelay plus
// ShutdownTimeout. ready, when not nil, is called once both listeners are
// up, with their addresses. Run returns nil after a clean stop, or the
// first error that prevented starting or stopping cleanly.
func Run(ctx context.Context, cfg Config, ready func(httpAddr, replAddr string)) (err error) {
	closeListeners := func() {
		for _, ln := range []net.Listener{cfg.HTTPListener, cfg.ReplListener} {
			if ln != nil {
				_ = ln.Close()
			}
		}
	}
	if err := cfg.validate(); err != nil {
		closeListeners()
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	httpLn := cfg.HTTPListener
	if httpLn == nil {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			closeListeners()
			return fmt.Errorf("node: app listener: %w", err)
		}
	}

	var disc *watchedDiscovery
	if cfg.Discovery != nil {
		disc = &watchedDiscovery{d: cfg.Discovery, id: cfg.ID, log: log}
	}
	bcfg := buddy.Config{
		ID:                cfg.ID,
		Zone:              cfg.Zone,
		ListenAddr:        cfg.ReplAddr,
		Listener:          cfg.ReplListener,
		Peers:             cfg.Peers,
		DiscoveryInterval: cfg.DiscoveryInterval,
		ClusterKeys:       cfg.ClusterKeys,
		Mode:              cfg.Mode,
		Logger:            log, // the node adds node=<ID> itself
	}
	if disc != nil {
		bcfg.Discovery = disc
	}
	if cfg.Buddy != nil {
		cfg.Buddy(&bcfg)
	}
	bn, err := buddy.New(bcfg)
	if err != nil {
		_ = httpLn.Close()
		closeListeners()
		return fmt.Errorf("node %s: %w", cfg.ID, err)
	}
	ccfg := core.Config{
		Keys:       cfg.CookieKeys,
		Replicator: bn,
		Cookie:     core.CookieConfig{RouteName: core.DefaultRouteCookie},
		Logger:     log.With("node", cfg.ID),
	}
	if cfg.Core != nil {
		cfg.Core(&ccfg)
	}
	mgr, err := core.NewManager(ccfg)
	if err != nil {
		_ = httpLn.Close()
		_ = bn.Close()
		return fmt.Errorf("node: manager of %s: %w", cfg.ID, err)
	}

	n := &Node{id: cfg.ID, buddy: bn, mgr: mgr, log: log, disc: disc}
	srv := &http.Server{
		Handler:           n.handler(cfg.Routes),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(httpLn) }()
	log.Info("node up", "node", cfg.ID, "http", httpLn.Addr().String(), "repl", bn.Addr(),
		"mode", bcfg.Mode.String(), "discovery", disc.String(), "ready", n.Ready())
	if ready != nil {
		ready(httpLn.Addr().String(), bn.Addr())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("node: serve: %w", serveErr)
	}

	// The stop: not ready, the delay, the app server, the drain, the
	// manager.
	n.stopping.Store(true)
	if serveErr == nil && cfg.ShutdownDelay > 0 {
		log.Info("node stopping: not ready, still serving", "node", cfg.ID, "for", cfg.ShutdownDelay)
		time.Sleep(cfg.ShutdownDelay)
	}
	log.Info("node stopping: draining", "node", cfg.ID, "sessions", mgr.Len())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if serveErr != nil {
		errs = append(errs, serveErr)
	}
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("node: app server shutdown: %w", err))
		_ = srv.Close()
	}
	if serveErr == nil {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("node: serve: %w", err))
		}
	}
	if err := bn.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("node: drain: %w", err))
	}
	if err := mgr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("node: manager close: %w", err))
	}
	log.Info("node stopped", "node", cfg.ID)
	return errors.Join(errs...)
}

// Node is a running node, as its handlers see it.
type Node struct {
	id       string
	buddy    *buddy.Node
	mgr      *core.Manager
	log      *slog.Logger
	disc     *watchedDiscovery // nil without Config.Discovery
	stopping atomic.Bool
}

// watchedDiscovery wraps Config.Discovery: it records that an answer came
// (until then a node would think itself alone, and ready), and warns when
// an answer does not list this node's ID, the usual misconfiguration.
type watchedDiscovery struct {
	d        buddy.Discovery
	id       string
	log      *slog.Logger
	answered atomic.Bool
	missing  atomic.Bool // the last answer did not list this node; logged
}

// Peers asks the wrapped Discovery.
func (w *watchedDiscovery) Peers(ctx context.Context) ([]buddy.Peer, error) {
	peers, err := w.d.Peers(ctx)
	if err != nil {
		return nil, err
	}
	w.answered.Store(true)
	listed := slices.ContainsFunc(peers, func(p buddy.Peer) bool { return p.ID == w.id })
	switch {
	case !listed && !w.missing.Swap(true):
		ids := make([]string, 0, min(len(peers), 5))
		for _, p := range peers[:min(len(peers), 5)] {
			ids = append(ids, p.ID)
		}
		w.log.Warn("node: discovery does not list this node: check its ID (the pod name with SRV, the pod IP with A records); "+
			"peers reject a node they do not list", "node", w.id, "discovery", w.String(), "peers", len(peers), "first", ids)
	case listed && w.missing.Swap(false):
		w.log.Info("node: discovery lists this node now", "node", w.id)
	}
	return peers, nil
}

// String names the wrapped Discovery ("" when w is nil).
func (w *watchedDiscovery) String() string {
	if w == nil {
		return ""
	}
	if s, ok := w.d.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", w.d)
}

// ready reports whether the discovery has answered, or there is none.
func (w *watchedDiscovery) ready() bool { return w == nil || w.answered.Load() }

// StatsInfo is the answer of GET /api/stats.
type StatsInfo struct {
	// Node is the node's ID.
	Node string `json:"node"`
	// Ready is what /readyz answers.
	Ready bool `json:"ready"`
	// Sessions is the number of sessions the node owns.
	Sessions int `json:"sessions"`
	// Stats are the node's replication counters.
	Stats buddy.Stats `json:"stats"`
}

// Ready reports what /readyz answers: the node has joined the ring and
// holds a buddy (buddy.Node.Ready), its Discovery (if any) has answered at
// least once, and it is not stopping.
func (n *Node) Ready() bool { return !n.stopping.Load() && n.disc.ready() && n.buddy.Ready() }

func (n *Node) handler(routes func(*gin.RouterGroup)) http.Handler {
	r := gin.New()
	r.Use(gin.Recovery(), func(c *gin.Context) {
		c.Header(NodeHeader, n.id)
		c.Next()
	})
	// Outside the session middleware: no cookie, no session.
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok %s\n", n.id) })
	r.GET("/readyz", func(c *gin.Context) {
		if !n.Ready() {
			c.String(http.StatusServiceUnavailable, "not ready %s\n", n.id)
			return
		}
		c.String(http.StatusOK, "ready %s\n", n.id)
	})
	r.GET("/api/stats", func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, StatsInfo{Node: n.id, Ready: n.Ready(), Sessions: n.mgr.Len(), Stats: n.buddy.Stats()})
	})

	s := r.Group("/", ginsession.Middleware(n.mgr))
	n.app(s)
	if routes != nil {
		routes(s)
	}
	return r
}
