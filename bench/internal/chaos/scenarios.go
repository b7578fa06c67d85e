package chaos

import (
	"slices"
	"time"

	"github.com/tandemsession/tandem/internal/faultproxy"
)

// scenario is one named experiment: a cluster, a workload and a fault
// schedule. Flags given on the command line override its values.
type scenario struct {
	name, about string
	nodes       int
	late        int // the last late nodes start only when the schedule says (join)
	app         string
	proxies     bool // replication links through faultproxy (network faults)
	duration    time.Duration
	stale       time.Duration // the balancer's lag
	work        workload
	faults      func(e *env) error
	// aloneOK: the faults leave a node with no other node to reach, so its
	// commits then have one copy by design (buddy.Degrade); the checker
	// counts only the degraded commits made while another node answered.
	aloneOK bool
}

// baseWorkload is a user that writes one key at a time, reads now and
// then, logs in and out.
func baseWorkload() workload {
	return workload{
		policy: policySticky, parallelMin: 1, parallelMax: 1, readAfter: 0.3,
		loginP: 0.03, logoutP: 0.02, replayP: 0.5, think: 20 * time.Millisecond,
		keys: []string{"a", "b", "c", "d"}, maxRounds: 1_000_000,
	}
}

// parallelWorkload sends two to four requests of one session at once (an
// XHR beside a page), then reads.
func parallelWorkload(lo, hi int) workload {
	w := baseWorkload()
	w.parallelMin, w.parallelMax, w.readAfter, w.readInGroup = lo, hi, 1, 0.2
	return w
}

// scenarios returns every scenario, in the order -scenario all runs them.
func scenarios() []scenario {
	const dead = 1500 * time.Millisecond // buddy's default DeadAfter
	s := []scenario{
		{
			name: "kill9", about: "kill -9 of the busiest owner under sequential requests",
			duration: 8 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 3)
				_, err := e.killOwner()
				return err
			},
		},
		{
			name: "echo-kill9", about: "kill9 on the Echo v4 app (echosession)", app: "echo",
			duration: 8 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 3)
				_, err := e.killOwner()
				return err
			},
		},
		{
			name: "double-failure", about: "kill -9 of an owner and its buddy at once: exactly their sessions are lost",
			aloneOK: true,
			nodes:   4, duration: 8 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 3)
				return e.killPair()
			},
		},
		{
			name: "parallel-after-kill", about: "two parallel writes of one session right after kill -9 of its owner, both to the same survivor",
			duration: 16 * time.Second, work: parallelWorkload(2, 2),
			faults: func(e *env) error {
				return e.cycles(8, 4*time.Second, func() error {
					e.wait(time.Second)
					id, err := e.killOwner()
					if err != nil {
						return err
					}
					e.wait(2 * dead)
					return e.restart(id)
				})
			},
		},
		{
			name: "split-parallel", about: "two parallel requests of one session sent to two nodes (owner and another)",
			duration: 8 * time.Second, work: func() workload { w := parallelWorkload(2, 2); w.policy = policySplit; return w }(),
			faults: func(e *env) error { return nil },
		},
		{
			name: "rolling-restart", about: "SIGTERM each node in turn (app server Shutdown, node.Shutdown, m.Close), restart it, next",
			duration: 20 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.wait(time.Second)
				return e.cycles(30, 4*time.Second, func() error {
					e.wait(300 * time.Millisecond)
					return e.rollingRestart()
				})
			},
		},
		{
			name: "join", about: "a fourth node starts after the others and joins the ring (then leaves with SIGTERM and joins again, repeated); requests go to any node",
			nodes: 4, late: 1, duration: 16 * time.Second,
			work: func() workload { w := baseWorkload(); w.policy = policyNonSticky; w.readAfter = 0.5; return w }(),
			faults: func(e *env) error {
				// n4 joins, serves a while, leaves gracefully, joins again.
				e.wait(time.Second)
				return e.cycles(10, 3*time.Second, func() error {
					if err := e.restart("n4"); err != nil {
						return err
					}
					e.wait(1500 * time.Millisecond)
					if err := e.c.term("n4"); err != nil {
						return err
					}
					e.c.waitSettled(e.ctx, e.settle)
					return nil
				})
			},
		},
		{
			name: "kill9-buddy", about: "kill -9 of the buddy of the busiest owner: its writes must wait for a new buddy, not go out with one copy",
			duration: 8 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 3)
				_, err := e.killBuddy()
				return err
			},
		},
		{
			name: "pause", about: "SIGSTOP of the busiest owner for twice DeadAfter, then SIGCONT: it wakes up believing it still owns its sessions",
			duration: 10 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 4)
				return e.pauseOwner()
			},
		},
		{
			name: "partition", about: "the busiest owner cut off from the other nodes (both ways) for twice DeadAfter; the balancer still reaches it",
			aloneOK: true,
			proxies: true, duration: 10 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 4)
				owner, _, err := e.victim()
				if err != nil {
					return err
				}
				return e.isolate(owner, e.others(owner), faultproxy.Cut, 0, true)
			},
		},
		{
			name: "partition-oneway", about: "the link from the busiest owner to its buddy cut one way for twice DeadAfter",
			proxies: true, duration: 10 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 4)
				owner, backup, err := e.victim()
				if err != nil {
					return err
				}
				return e.isolate(owner, []string{backup}, faultproxy.Cut, 0, false)
			},
		},
		{
			name: "slow-link", about: "100 ms added each way between the busiest owner and its buddy for twice DeadAfter",
			proxies: true, duration: 10 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 4)
				owner, backup, err := e.victim()
				if err != nil {
					return err
				}
				return e.isolate(owner, []string{backup}, faultproxy.Delay, 100*time.Millisecond, true)
			},
		},
		{
			name: "restart", about: "kill -9 of the busiest owner, restarted on the same ports once the others noticed",
			duration: 10 * time.Second, work: baseWorkload(),
			faults: func(e *env) error {
				e.at(e.left() / 4)
				id, err := e.killOwner()
				if err != nil {
					return err
				}
				e.wait(2 * dead)
				return e.restart(id)
			},
		},
		{
			name: "steady", about: "no fault, sticky routing: the control",
			duration: 6 * time.Second, work: parallelWorkload(1, 2),
			faults: func(e *env) error { return nil },
		},
	}
	for i := range s {
		if s[i].nodes == 0 {
			s[i].nodes = 3
		}
		if s[i].app == "" {
			s[i].app = "gin"
		}
		if s[i].stale == 0 {
			s[i].stale = 250 * time.Millisecond
		}
	}
	return s
}

// knownFailure is a scenario that fails at the code as it is, and why. The
// CI sweep reports it and does not fail on it, as long as it breaks only
// the rules listed in tolerate (all of them when tolerate is empty): a new
// kind of violation in a known-failing scenario still fails the sweep. The
// follow-up ownership issue removes the entries as it fixes them.
type knownFailure struct {
	scenario string
	reason   string
	tolerate []string // counters of the one-line output: lost_writes, lost_sessions, stale_reads, forks, undone_logouts, degraded
}

// knownFailing lists the scenarios that fail at the code as it is, each
// with why: none since the ownership work (issue #11). Until then every
// scenario but kill9-buddy, pause's partition caveat and the joins failed:
// see bench/README.md for the counts at 4df42d2.
func knownFailing() []knownFailure { return nil }

// knownFailureOf returns the entry of scenario name.
func knownFailureOf(name string) (knownFailure, bool) {
	for _, k := range knownFailing() {
		if k.scenario == name {
			return k, true
		}
	}
	return knownFailure{}, false
}

// tolerates reports whether the known failure covers every violation of s.
func (k knownFailure) tolerates(s *summary) bool {
	if len(k.tolerate) == 0 {
		return true
	}
	counts := map[string]int{"lost_writes": s.lostWrites, "lost_sessions": s.lostSessions, "stale_reads": s.staleReads,
		"forks": s.forks, "undone_logouts": s.undoneLogouts, "degraded": int(min(s.degraded, 1<<30))}
	if s.runErrors > 0 || s.stallHits > 0 {
		return false
	}
	for name, n := range counts {
		if n > 0 && !slices.Contains(k.tolerate, name) {
			return false
		}
	}
	return true
}
