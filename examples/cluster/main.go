// Command cluster runs a local Tandem cluster: three nodes of
// examples/node (the demo shop, with the load-test routes of
// internal/nodeapp) as child processes of this program, a sticky load
// balancer in front of them that routes by the tandem_node cookie and falls
// over to another node, and a live dashboard at /dashboard with buttons to
// kill and restart nodes.
//
//	go run ./examples/cluster              # http://127.0.0.1:8080/ and /dashboard
//	go run ./examples/cluster -demo        # a scripted failover and rolling restart
//	go run ./examples/cluster -membership memberlist   # the nodes on hashicorp/memberlist
//
// Ctrl-C stops every node gracefully (each drains its sessions to its buddy)
// and waits for them. The nodes are real processes, so a kill from the
// dashboard is a real SIGKILL.
//
// The nodes use the static membership (buddy.Config.Peers). -membership
// memberlist runs the same example from examples/cluster/memberlist, a
// module of its own (Tandem's root module does not depend on memberlist):
// this command runs "go run ." there with its arguments, or prints that
// command when the source is not on this machine. The code is
// examples/cluster/internal/clusterapp.
package main

import (
	"os"
	"path/filepath"
	"runtime"

	"github.com/tandemsession/tandem/examples/cluster/internal/clusterapp"
)

func main() {
	// This file's directory when built from source (go run, go build
	// without -trimpath): the memberlist module is beside it.
	dir := ""
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir = filepath.Join(filepath.Dir(file), "memberlist")
	}
	os.Exit(clusterapp.Main(clusterapp.Config{Elsewhere: map[string]clusterapp.Elsewhere{
		"memberlist": {Dir: dir, Path: "examples/cluster/memberlist"},
	}}))
}
