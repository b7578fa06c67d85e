// Package chaos is Tandem's history checker, in the manner of Jepsen,
// behind the command bench/chaos: it runs a cluster of real node processes
// on loopback, drives it with virtual users while it injects faults (kill
// -9, SIGTERM, restarts, a joining node, SIGSTOP, partitions and slow
// links between nodes), records every request, and checks the history:
// per-key linearizability of the acknowledged operations (porcupine), and
// Tandem's own session rules: no fresh session for a session that exists
// (unless both its copies died together), no write acknowledged on two
// owners, no logout undone, and in Sync mode no commit acknowledged with
// one copy.
//
// Main is the whole command, driver and node alike: nodes are the driver
// re-executed in a hidden child mode, so a kill is a real SIGKILL, and
// children die with the driver (Pdeathsig). A command built on Main may
// register membership implementations besides static (Config.Memberships):
// bench/chaos/memberlist, its own module, registers hashicorp/memberlist's,
// which the root module does not depend on.
package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Config is what a command built on Main adds to the checker.
type Config struct {
	// Memberships are the membership implementations this command offers
	// besides static (buddy.Config.Peers), by the name -membership takes.
	// Each node of such a membership gets a gossip port of its own,
	// reserved by the driver like its other ports (Node.Gossip).
	Memberships map[string]Membership
	// Elsewhere tells, for a membership this command does not offer, how
	// to run the checker with it (a command line): -membership with that
	// name fails with this hint instead of an unknown-name error.
	Elsewhere map[string]string
}

// Main runs the command with the process's arguments and returns its exit
// code: 0 when every scenario passed, 1 when one failed, 2 on a usage or
// run error. Run as a node child (the driver re-executing itself), it runs
// the node until SIGTERM instead.
func Main(cfg Config) int {
	if os.Getenv(envChild) == "node" {
		if err := runChild(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "node %s: %v\n", os.Getenv(envID), err)
			return 1
		}
		return 0
	}
	return run(cfg)
}

// options are the command's flags.
type options struct {
	scenario   string
	runs       int
	seed       int64
	users      int
	duration   time.Duration
	nodes      int
	mode       string
	membership string
	stale      time.Duration
	policy     string
	out        string
	maxStall   time.Duration
	nodeLog    string
	check      string
	list       bool
	degradedOK bool
	set        map[string]bool // flags given on the command line
}

func run(cfg Config) int {
	var o options
	flag.StringVar(&o.scenario, "scenario", "kill9", "scenario name, comma-separated names, all, or ci (every scenario once; known failures do not fail it)")
	flag.IntVar(&o.runs, "runs", 1, "runs per scenario (a soak)")
	flag.Int64Var(&o.seed, "seed", 0, "seed of the users' choices (0: from the clock); run i uses seed+i")
	flag.IntVar(&o.users, "users", 32, "virtual users")
	flag.DurationVar(&o.duration, "duration", 0, "load per run (0: the scenario's)")
	flag.IntVar(&o.nodes, "nodes", 0, "nodes (0: the scenario's, 3 for most)")
	flag.StringVar(&o.mode, "mode", "sync", "replication: sync or async")
	flag.StringVar(&o.membership, "membership", "static", cfg.usage())
	flag.DurationVar(&o.stale, "stale", -1, "how long the balancer's view of a node lags a change (-1: the scenario's, 250ms for most)")
	flag.StringVar(&o.policy, "policy", "", "balancer routing: sticky, nonsticky or split (default: the scenario's)")
	flag.StringVar(&o.out, "out", "", "output directory (default: a new temporary directory, printed at the end)")
	flag.DurationVar(&o.maxStall, "max-stall", 0, "when above 0, a request slower than this is a violation")
	flag.StringVar(&o.nodeLog, "node-log", "info", "the nodes' log level (debug, info, warn, error)")
	flag.StringVar(&o.check, "check", "", "check this history.jsonl again instead of running")
	flag.BoolVar(&o.list, "list", false, "list the scenarios")
	flag.BoolVar(&o.degradedOK, "degraded-ok", false, "in sync mode, report degraded commits without counting them as a violation")
	flag.Parse()
	o.set = map[string]bool{}
	flag.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	if o.list {
		for _, s := range scenarios() {
			known := ""
			if k, ok := knownFailureOf(s.name); ok {
				known = " [known to fail: " + k.reason + "]"
			}
			fmt.Printf("%-20s %s%s\n", s.name, s.about, known)
		}
		return 0
	}
	if o.check != "" {
		return recheck(o)
	}
	if err := cfg.validMembership(o.membership); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := sweep(ctx, o, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	return code
}

// selected returns the scenarios -scenario names, and whether this is the
// CI sweep.
func selected(name string) ([]scenario, bool, error) {
	all := scenarios()
	switch name {
	case "all":
		return all, false, nil
	case "ci":
		return all, true, nil
	}
	var out []scenario
	for n := range strings.SplitSeq(name, ",") {
		i := slices.IndexFunc(all, func(s scenario) bool { return s.name == n })
		if i < 0 {
			return nil, false, fmt.Errorf("unknown scenario %q (-list names them)", n)
		}
		out = append(out, all[i])
	}
	return out, false, nil
}

// apply returns sc with the flags given applied.
func (o *options) apply(sc scenario) (scenario, error) {
	if o.set["duration"] {
		sc.duration = o.duration
	}
	if o.set["nodes"] {
		sc.nodes = o.nodes
		sc.late = min(sc.late, max(o.nodes-2, 0))
	}
	if o.set["stale"] && o.stale >= 0 {
		sc.stale = o.stale
	}
	if o.policy != "" {
		if err := validPolicy(o.policy); err != nil {
			return sc, err
		}
		sc.work.policy = o.policy
	}
	sc.work.requestTimeout = 5 * time.Second
	switch {
	case sc.duration <= 0 || sc.duration > time.Hour:
		return sc, errors.New("-duration must be above 0 and at most 1h")
	case sc.nodes < 2 || sc.nodes > 9:
		return sc, errors.New("-nodes must be 2 to 9")
	}
	return sc, nil
}

// sweep runs the scenarios and prints their lines; the exit code is 1 if
// one failed (in the CI sweep: one not known to fail).
func sweep(ctx context.Context, o options, log *slog.Logger) (int, error) {
	list, ci, err := selected(o.scenario)
	if err != nil {
		return 0, err
	}
	switch {
	case o.runs < 1 || o.runs > 10000:
		return 0, errors.New("-runs must be 1 to 10000")
	case o.users < 1 || o.users > 1000:
		return 0, errors.New("-users must be 1 to 1000")
	case o.mode != "sync" && o.mode != "async":
		return 0, errors.New("-mode must be sync or async")
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	out := o.out
	if out == "" {
		if out, err = os.MkdirTemp("", "tandem-chaos-"); err != nil {
			return 0, err
		}
	}
	seed := o.seed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000
	}
	code := 0
	var lines []string
	var failed []failedRun
	for _, sc := range list {
		sc, err := o.apply(sc)
		if err != nil {
			return 0, err
		}
		strict := o.mode == "sync" && !o.degradedOK
		sum := newSummary(sc.name, strict)
		sum.membership = o.membership
		for i := 1; i <= o.runs && ctx.Err() == nil; i++ {
			dir := filepath.Join(out, sc.name, fmt.Sprintf("run-%02d", i))
			rc := runConfig{sc: sc, run: i, seed: seed + int64(i), users: o.users, mode: o.mode, membership: o.membership,
				exe: exe, dir: dir, nodeLog: o.nodeLog, maxStall: o.maxStall, strict: strict}
			res, err := runOnce(ctx, rc, log)
			if err != nil {
				sum.runErrors++
				log.Error("chaos: run failed", "scenario", sc.name, "run", i, "dir", dir, "err", err)
				failed = append(failed, failedRun{scenario: sc.name, run: i, dir: dir, err: err})
				continue
			}
			if res.violations(strict) > 0 {
				failed = append(failed, failedRun{scenario: sc.name, run: i, dir: dir, res: res})
			}
			sum.add(res)
			fmt.Fprintln(os.Stderr, runLine(sc.name, i, res, strict, dir))
		}
		l := sum.line()
		fmt.Println(l)
		lines = append(lines, l)
		k, known := knownFailureOf(sc.name)
		switch {
		case sum.pass() && ci && known:
			fmt.Fprintf(os.Stderr, "chaos: %s is listed in knownFailing but passed this time\n", sc.name)
		case sum.pass():
		case ci && known && k.tolerates(sum):
			fmt.Fprintf(os.Stderr, "chaos: %s fails as known: %s\n", sc.name, k.reason)
		case ci && known:
			fmt.Fprintf(os.Stderr, "chaos: %s is known to fail (%s), but it broke a rule not listed as known (only %v are)\n", sc.name, k.reason, k.tolerate)
			code = 1
		default:
			code = 1
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return 0, err
	}
	// Last, so that a log's tail (all CI keeps of a long run) names what failed.
	recap(os.Stderr, failed)
	fmt.Fprintln(os.Stderr, "chaos: output in", out)
	if ctx.Err() != nil {
		return 2, nil
	}
	return code, nil
}

// recheck runs the checker on a recorded history and prints its line; the
// report goes beside the history.
func recheck(o options) int {
	f, err := os.Open(o.check)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	h, err := readHistory(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	sync := h.Header.Mode == "sync" && !o.degradedOK
	res := check(h, checkConfig{sync: sync, maxStall: o.maxStall})
	sum := newSummary(h.Header.Scenario, sync)
	sum.membership = h.Header.Membership
	sum.add(res)
	fmt.Println(sum.line())
	if res.violations(sync) > 0 {
		dir := filepath.Dir(o.check)
		if err := writeReport(dir, h, res); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
		fmt.Fprintln(os.Stderr, "chaos: report in", filepath.Join(dir, "report.txt"))
		return 1
	}
	return 0
}
