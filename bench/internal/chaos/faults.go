package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tandemsession/tandem/internal/faultproxy"
)

// env is what a fault schedule works with during one run.
type env struct {
	ctx      context.Context
	c        *cluster
	tal      *tally
	log      *slog.Logger
	start    time.Time // the load started
	deadline time.Time // the load stops
	// settle bounds each wait for the cluster to settle.
	settle time.Duration
	// pause is how long a pause or a partition lasts.
	hold time.Duration
}

// at waits until d into the run (or the run's end).
func (e *env) at(d time.Duration) {
	sleep(e.ctx, time.Until(e.start.Add(d)))
}

// wait waits d.
func (e *env) wait(d time.Duration) { sleep(e.ctx, d) }

// left is the time until the load stops.
func (e *env) left() time.Duration { return time.Until(e.deadline) }

// live returns the running nodes that are not paused.
func (e *env) live() []string {
	var out []string
	for _, id := range e.c.running() {
		if !e.c.node(id).isPaused() {
			out = append(out, id)
		}
	}
	return out
}

// victim returns the live node that owns the most users' sessions, and
// the backup most of them were told of.
func (e *env) victim() (owner, backup string, err error) {
	live := e.live()
	if len(live) < 2 {
		return "", "", fmt.Errorf("fault: %d live nodes, need two", len(live))
	}
	owner, backup = e.tal.busiest(live)
	if backup == "" || backup == owner {
		backup = e.c.bal.next(owner, map[string]bool{owner: true})
	}
	return owner, backup, nil
}

// killOwner SIGKILLs the busiest owner.
func (e *env) killOwner() (string, error) {
	owner, _, err := e.victim()
	if err != nil {
		return "", err
	}
	e.log.Info("chaos: kill -9", "node", owner)
	return owner, e.c.kill(owner)
}

// killBuddy SIGKILLs the backup of the busiest owner.
func (e *env) killBuddy() (string, error) {
	_, backup, err := e.victim()
	if err != nil {
		return "", err
	}
	e.log.Info("chaos: kill -9 of a buddy", "node", backup)
	return backup, e.c.kill(backup)
}

// killPair SIGKILLs the busiest owner and its buddy at once.
func (e *env) killPair() error {
	owner, backup, err := e.victim()
	if err != nil {
		return err
	}
	e.log.Info("chaos: kill -9 of an owner/buddy pair", "owner", owner, "buddy", backup)
	return e.c.kill(owner, backup)
}

// restart starts a stopped node again on its ports and waits for the
// cluster to settle.
func (e *env) restart(id string) error {
	e.log.Info("chaos: restart", "node", id)
	if err := e.c.start(e.ctx, id); err != nil {
		return err
	}
	e.c.waitSettled(e.ctx, e.settle)
	return nil
}

// rollingRestart stops each live node with SIGTERM in turn (the README's
// order), restarts it and waits for the cluster to settle before the next.
func (e *env) rollingRestart() error {
	for _, id := range e.c.running() {
		if e.left() < 3*time.Second || e.ctx.Err() != nil {
			return nil
		}
		e.log.Info("chaos: rolling restart", "node", id)
		if err := e.c.term(id); err != nil {
			return err
		}
		if err := e.restart(id); err != nil {
			return err
		}
	}
	return nil
}

// pauseOwner SIGSTOPs the busiest owner for e.hold, then SIGCONTs it.
func (e *env) pauseOwner() error {
	owner, _, err := e.victim()
	if err != nil {
		return err
	}
	e.log.Info("chaos: pause", "node", owner, "for", e.hold)
	if err := e.c.pause(owner); err != nil {
		return err
	}
	e.wait(e.hold)
	return e.c.resume(owner)
}

// isolate cuts every link between node id and the others: both ways, or
// only from id (oneWay), for e.hold, then heals.
func (e *env) isolate(id string, to []string, m faultproxy.Mode, d time.Duration, bothWays bool) error {
	var errs []error
	for _, o := range to {
		errs = append(errs, e.c.setLink(id, o, m, d))
		if bothWays {
			errs = append(errs, e.c.setLink(o, id, m, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.wait(e.hold)
	return e.c.heal()
}

// others returns every node but id.
func (e *env) others(id string) []string {
	var out []string
	for _, o := range e.c.ids() {
		if o != id {
			out = append(out, o)
		}
	}
	return out
}

// cycles runs step repeatedly while at least minLeft remains of the load,
// at most max times.
func (e *env) cycles(max int, minLeft time.Duration, step func() error) error {
	for i := 0; i < max && e.left() >= minLeft && e.ctx.Err() == nil; i++ {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
