// Command chaos is Tandem's history checker, in the manner of Jepsen: it
// runs a cluster of real node processes on loopback, drives it with
// virtual users while it injects faults (kill -9, SIGTERM, restarts, a
// joining node, SIGSTOP, partitions and slow links between nodes), records
// every request, and checks the history: per-key linearizability of the
// acknowledged operations (porcupine), and Tandem's own session rules: no
// fresh session for a session that exists (unless both its copies died
// together), no write acknowledged on two owners, no logout undone, and in
// Sync mode no commit acknowledged with one copy.
//
//	go run ./bench/chaos -scenario kill9
//	go run ./bench/chaos -scenario all -runs 20        # the soak
//	go run ./bench/chaos -scenario ci                  # every scenario once, for CI
//	go run ./bench/chaos -check DIR/history.jsonl      # check a recorded history again
//
// It prints one line per scenario (see bench/README.md), and exits non-zero
// when a scenario failed (in the CI sweep: one not listed in knownFailing).
// Nodes are the driver re-executed in a hidden child mode: a kill is a
// real SIGKILL, and children die with the driver (Pdeathsig).
//
// Its nodes use the static membership (buddy.Config.Peers). The same
// checker on hashicorp/memberlist is bench/chaos/memberlist, a module of
// its own so that Tandem's root module does not depend on memberlist:
//
//	cd bench/chaos/memberlist && go run . -membership memberlist -scenario kill9
//
// The code is bench/internal/chaos.
package main

import (
	"os"

	"github.com/tandemsession/tandem/bench/internal/chaos"
)

func main() {
	os.Exit(chaos.Main(chaos.Config{Elsewhere: map[string]string{
		"memberlist": "cd bench/chaos/memberlist && go run . -membership memberlist -scenario kill9",
	}}))
}
