// Package nodeapp is the demo node program of Tandem's cluster example, as a
// library that the example, its tests and the benchmark load driver share:
// one cluster node (a buddy.Node, a core.Manager and a Gin app using
// ginsession) that serves until its context ends and then drains gracefully.
//
// Run does not change Gin's global mode; call gin.SetMode(gin.ReleaseMode)
// in main to silence Gin's debug output.
package nodeapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// RouteCookie is the plain cookie, written by core whenever a session's
// owner changes, that names the node owning the session. Load balancers
// route by it.
const RouteCookie = "tandem_node"

// NodeHeader is the response header naming the node that served a request.
const NodeHeader = "X-Tandem-Node"

// NewSessionHeader is set to "1" on the answers of the /bench routes when
// the request brought no valid session: its cookie was missing, or named a
// session no node held. A load driver spots lost sessions with it.
const NewSessionHeader = "X-Tandem-New-Session"

// Config configures one node. ID, HTTPAddr (or HTTPListener), ReplAddr (or
// ReplListener), ClusterKey and CookieKeys are required.
type Config struct {
	// ID names the node; IDs order the buddy ring.
	ID string
	// HTTPAddr is the application's listen address (host:port).
	HTTPAddr string
	// ReplAddr is the replication listener's address (host:port); it must
	// match this node's entry in Peers.
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

func (cfg *Config) validate() error {
	switch {
	case cfg.ID == "":
		return errors.New("nodeapp: ID is required")
	case cfg.HTTPAddr == "" && cfg.HTTPListener == nil:
		return errors.New("nodeapp: HTTPAddr or HTTPListener is required")
	case cfg.ReplAddr == "" && cfg.ReplListener == nil:
		return errors.New("nodeapp: ReplAddr or ReplListener is required")
	case len(cfg.ClusterKey) != buddy.ClusterKeySize:
		return fmt.Errorf("nodeapp: ClusterKey must be %d bytes, not %d", buddy.ClusterKeySize, len(cfg.ClusterKey))
	case len(cfg.CookieKeys.Hash) == 0 || len(cfg.CookieKeys.Block) == 0:
		return errors.New("nodeapp: CookieKeys are required")
	}
	return nil
}

// Run starts the node and serves until ctx ends; it then stops gracefully:
// the app server's Shutdown (requests in flight finish), the node's drain
// (its sessions are handed to its buddy) and the manager's Close, all within
// ShutdownTimeout. ready, when not nil, is called once both listeners are
// up, with their addresses. Run returns nil after a clean stop, or the first
// error that prevented starting or stopping cleanly.
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
			return fmt.Errorf("nodeapp: app listener: %w", err)
		}
	}

	bcfg := buddy.Config{
		ID:          cfg.ID,
		ListenAddr:  cfg.ReplAddr,
		Listener:    cfg.ReplListener,
		Peers:       cfg.Peers,
		ClusterKeys: [][]byte{cfg.ClusterKey},
		Mode:        cfg.Mode,
		Logger:      log,
	}
	if cfg.Buddy != nil {
		cfg.Buddy(&bcfg)
	}
	node, err := buddy.New(bcfg)
	if err != nil {
		_ = httpLn.Close()
		closeListeners()
		return fmt.Errorf("nodeapp: node %s: %w", cfg.ID, err)
	}
	ccfg := core.Config{
		Keys:       []core.KeyPair{cfg.CookieKeys},
		Replicator: node,
		Cookie:     core.CookieConfig{RouteName: RouteCookie},
		Logger:     log,
	}
	if cfg.Core != nil {
		cfg.Core(&ccfg)
	}
	mgr, err := core.NewManager(ccfg)
	if err != nil {
		_ = httpLn.Close()
		_ = node.Close()
		return fmt.Errorf("nodeapp: manager of %s: %w", cfg.ID, err)
	}

	a := &app{id: cfg.ID, node: node, mgr: mgr, log: log}
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(httpLn) }()
	log.Info("node up", "node", cfg.ID, "http", httpLn.Addr().String(), "repl", node.Addr(), "mode", bcfg.Mode.String())
	if ready != nil {
		ready(httpLn.Addr().String(), node.Addr())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("nodeapp: serve: %w", serveErr)
	}

	log.Info("node stopping: draining", "node", cfg.ID, "sessions", mgr.Len())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if serveErr != nil {
		errs = append(errs, serveErr)
	}
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("nodeapp: app server shutdown: %w", err))
		_ = srv.Close()
	}
	if serveErr == nil {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("nodeapp: serve: %w", err))
		}
	}
	if err := node.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("nodeapp: drain: %w", err))
	}
	if err := mgr.Close(); err != nil {
		errs = append(errs, fmt.Errorf("nodeapp: manager close: %w", err))
	}
	log.Info("node stopped", "node", cfg.ID)
	return errors.Join(errs...)
}
