package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// runConfig is one run of one scenario, flags applied.
type runConfig struct {
	sc         scenario
	run        int
	seed       int64
	users      int
	mode       string
	membership string
	exe        string
	dir        string // this run's output directory
	nodeLog    string
	maxStall   time.Duration
	// strict: degraded commits are a violation (Sync mode, no -degraded-ok).
	strict bool
}

// runOnce runs a scenario once: cluster, users and faults, then the
// quiesced final reads, then the checker. It stops every process it
// started, whatever happens.
func runOnce(ctx context.Context, rc runConfig, log *slog.Logger) (*Result, error) {
	sc := rc.sc
	if err := os.MkdirAll(rc.dir, 0o755); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	var ids []string
	for i := range sc.nodes {
		ids = append(ids, nodeID(i))
	}
	rec, err := newRecorder(filepath.Join(rc.dir, "history.jsonl"), Header{Scenario: sc.name, Run: rc.run, Seed: rc.seed,
		Mode: rc.mode, App: sc.app, Membership: rc.membership, Nodes: ids, Users: rc.users, AloneOK: sc.aloneOK})
	if err != nil {
		return nil, err
	}
	bal := newBalancer(sc.stale)
	c, err := newCluster(clusterConfig{exe: rc.exe, nodes: sc.nodes, mode: rc.mode, app: sc.app, membership: rc.membership,
		proxies: sc.proxies, logLevel: rc.nodeLog, dir: rc.dir}, rec, bal, log)
	if err != nil {
		_, _ = rec.close()
		return nil, err
	}
	runErr := drive(ctx, rc, c, rec, log)
	c.close()
	h, herr := rec.close()
	if err := errors.Join(runErr, herr); err != nil {
		return nil, err
	}
	res := check(h, checkConfig{sync: rc.strict, maxStall: rc.maxStall})
	if res.violations(rc.strict) > 0 {
		if err := writeReport(rc.dir, h, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// drive starts the nodes, runs the users and the fault schedule, heals,
// waits for the cluster to settle, and runs the final reads.
func drive(ctx context.Context, rc runConfig, c *cluster, rec *recorder, log *slog.Logger) error {
	sc := rc.sc
	for i := range sc.nodes - sc.late {
		if err := c.start(ctx, nodeID(i)); err != nil {
			return err
		}
	}
	if !c.waitSettled(ctx, 20*time.Second) {
		return errors.New("the cluster did not form")
	}
	// The balancer's view lags: let it see the nodes up before the load.
	sleep(ctx, sc.stale+10*time.Millisecond)
	pctx, stopPolling := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Go(func() { c.pollLoop(pctx, 300*time.Millisecond) })
	defer func() {
		stopPolling()
		pwg.Wait()
	}()

	tal := newTally()
	start := time.Now()
	deadline := start.Add(sc.duration)
	users := make([]*user, rc.users)
	for i := range users {
		users[i] = newUser(i, sc.work, rc.seed, c.bal, rec, tal)
	}
	var uwg sync.WaitGroup
	for _, u := range users {
		uwg.Go(func() { u.run(ctx, deadline) })
	}
	e := &env{ctx: ctx, c: c, tal: tal, log: log, start: start, deadline: deadline, settle: 15 * time.Second, hold: 3 * time.Second}
	faultErr := sc.faults(e)
	uwg.Wait()
	if faultErr != nil {
		log.Warn("chaos: fault schedule failed", "scenario", sc.name, "err", faultErr)
	}

	// Quiesce: lift every fault, let the ring settle, then read.
	var errs []error
	errs = append(errs, faultErr, c.heal())
	for _, id := range c.running() {
		if c.node(id).isPaused() {
			errs = append(errs, c.resume(id))
		}
	}
	settled := c.waitSettled(ctx, 20*time.Second)
	rec.event(evQuiesce, c.running(), fmt.Sprintf("settled=%v", settled))
	var fwg sync.WaitGroup
	for _, u := range users {
		fwg.Go(func() { u.finish(ctx) })
	}
	fwg.Wait()
	c.pollAll()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
