// Command tandem-node runs one Tandem cluster node (package
// github.com/tandemsession/tandem/examples/node): the demo shop on Gin,
// replicated to its buddy. Configure it with flags or the environment; the
// keys come from the environment:
//
//	TANDEM_CLUSTER_KEY=... TANDEM_COOKIE_HASH_KEY=... TANDEM_COOKIE_BLOCK_KEY=... \
//	tandem-node -id n1 -http :8080 -repl :7946 -peers n1=10.0.0.1:7946,n2=10.0.0.2:7946
//
// or, in a Kubernetes StatefulSet whose pods find each other through the
// SRV records of a headless Service (see examples/kubernetes):
//
//	tandem-node -id "$POD_NAME" -http :8080 -repl :7946 \
//		-dns-srv _repl._tcp.tandem.default.svc.cluster.local.
//
// SIGTERM or SIGINT stops it gracefully: its sessions go to its buddy.
// tandem-node -h lists the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/examples/node"
)

func main() {
	cfg, err := node.FromArgs(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-node:", err)
		os.Exit(2)
	}
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := node.Run(ctx, cfg, nil); err != nil {
		cfg.Logger.Error("node stopped with an error", "err", err)
		os.Exit(1)
	}
}
