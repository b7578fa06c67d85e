package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/bench/internal/inproc"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// The environment of a node child. The driver sets it when it re-executes
// itself; a person never does. The child's application listener is file
// descriptor 3, its replication listener 4.
const (
	envChild = "TANDEM_BENCH_CHILD" // "node": run as a node
	envID    = "TANDEM_BENCH_ID"
	envPeers = "TANDEM_BENCH_PEERS" // id=addr,id=addr,...
	envMode  = "TANDEM_BENCH_MODE"  // off, sync or async
	envCodec = "TANDEM_BENCH_CODEC" // compress.Config.Codec
	envBatch = "TANDEM_BENCH_BATCH" // buddy.Config.MaxBatchRecords
	// envSyncLinger is buddy.Config.SyncLinger (a duration); the driver
	// passes its own environment on, so it may be set by hand for tuning.
	envSyncLinger = "TANDEM_BENCH_SYNC_LINGER"
	// envCPUProfile, set by hand, is a directory where each node writes a
	// CPU profile of its whole run, ID.prof (go tool pprof).
	envCPUProfile = "TANDEM_BENCH_CPUPROFILE"
	envLog        = "TANDEM_BENCH_LOG" // slog level; empty: discard
)

// runChild runs one node (internal/nodeapp) until SIGTERM, then drains it.
// A SIGKILL from the driver is a crash.
func runChild() error {
	gin.SetMode(gin.ReleaseMode)
	id := os.Getenv(envID)
	mode, err := inproc.ParseMode(os.Getenv(envMode))
	if err != nil {
		return err
	}
	var peers []buddy.Peer
	for part := range strings.SplitSeq(os.Getenv(envPeers), ",") {
		pid, addr, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%s: bad entry %q", envPeers, part)
		}
		peers = append(peers, buddy.Peer{ID: pid, Addr: addr})
	}
	codec := os.Getenv(envCodec)
	batch, _ := strconv.Atoi(os.Getenv(envBatch))
	linger, _ := time.ParseDuration(os.Getenv(envSyncLinger))
	cfg := inproc.NodeConfig(id, peers, mode, func(c *buddy.Config) {
		c.Compression.Codec = codec
		if batch > 0 {
			c.MaxBatchRecords = batch
		}
		if linger != 0 {
			c.SyncLinger = linger
		}
	})
	if mode == inproc.Off {
		for _, p := range peers {
			if p.ID == id {
				cfg.Peers = []buddy.Peer{p}
			}
		}
	}
	if cfg.HTTPListener, err = net.FileListener(os.NewFile(3, "http")); err != nil {
		return err
	}
	if cfg.ReplListener, err = net.FileListener(os.NewFile(4, "repl")); err != nil {
		return err
	}
	if lv := os.Getenv(envLog); lv != "" {
		var level slog.Level
		_ = level.UnmarshalText([]byte(lv))
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if dir := os.Getenv(envCPUProfile); dir != "" {
		f, err := os.Create(filepath.Join(dir, id+".prof"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return nodeapp.Run(ctx, cfg, nil)
}

func formatPeers(peers []buddy.Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.ID + "=" + p.Addr
	}
	return strings.Join(parts, ",")
}
