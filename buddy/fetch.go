package buddy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// Fetch sources, the keys of Stats.Fetches.
const (
	SourceOwner       = "owner"        // the owner named in the cookie, or the node it moved to
	SourceBackup      = "backup"       // the backup named in the cookie
	SourceOwnersBuddy = "owners_buddy" // the owner's buddy in the current ring
	SourceLocal       = "local"        // this node's own backup copy
	SourceScan        = "scan"         // found by asking every live node
	SourceNone        = "none"         // nobody holds it: a fresh session
	SourceUnavailable = "unavailable"  // a holder did not answer in time: 503
)

var fetchSources = []string{SourceOwner, SourceBackup, SourceOwnersBuddy, SourceLocal, SourceScan, SourceNone, SourceUnavailable}

var _ core.Fetcher = (*Node)(nil)

// candidate is a node to ask for a session, and what it is to the session.
type candidate struct{ id, source string }

// redirected marks the source of a candidate that a node named: it is
// asked whatever this node believes of it (the node that named it just
// dealt with it; it may have restarted and not pinged this node yet).
const redirected = "+redirect"

// fetchPlan returns, in order, the nodes to ask for a session this node
// does not hold, or holds an older copy of: the node this one gave it to
// (movedTo), the owner named in the cookie, the owner's buddy in the
// current ring (ownersBuddy: when the owner changed buddies since the
// cookie was issued, the newer of the two), the backup named in the
// cookie, then this node's own backup copy (self). Each node appears once;
// "" and the cookie owner when it is self (this node does not hold it, or
// it would not ask) are left out. A cookie marked unsaved names only its
// owner.
func fetchPlan(self string, route core.Route, movedTo, ownersBuddy string) []candidate {
	var out []candidate
	add := func(id, source string) {
		if id != "" && !slices.ContainsFunc(out, func(c candidate) bool { return c.id == id }) {
			out = append(out, candidate{id, source})
		}
	}
	if movedTo != self {
		add(movedTo, SourceOwner)
	}
	if route.Owner != self {
		add(route.Owner, SourceOwner)
	}
	if route.Unsaved {
		return out
	}
	add(ownersBuddy, SourceOwnersBuddy)
	add(route.Backup, SourceBackup)
	add(self, SourceLocal)
	return out
}

// ErrUndetermined wraps the error Fetch returns when it could not tell in
// time whether the session exists: a node that may hold it did not answer,
// or was handing it over. core answers such a request with
// core.ErrUnavailable (503, Retry-After) instead of a fresh session.
var ErrUndetermined = errors.New("buddy: session location undetermined")

// Fetch implements core.Fetcher. It asks the nodes of fetchPlan in order,
// following redirects and never asking a node twice, then every other
// node that may answer at once; nodes that hold the session but cannot
// hand it over yet (pending) are asked again until ReplicationTimeout. A
// holder gives its copy up; a backup copy is handed out only when its
// owner is gone. A backup copy from a node other than the owner's buddy
// (a former buddy, whose copy stopped at the owner's switch) does not end
// the search: the others are asked, and the newest copy wins. The session
// is gone (nil, nil) only when every node that may answer said it holds
// none; otherwise Fetch returns ErrUndetermined.
func (n *Node) Fetch(ctx context.Context, id string, route core.Route, local core.Stamp) (*core.Change, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicationTimeout)
	defer cancel()
	s := &search{n: n, id: id, route: route, local: local,
		tried: map[string]bool{}, silent: map[string]bool{}, pending: map[string]bool{}, named: map[string]bool{}, redirecting: map[string]bool{}}
	if mv := n.moving.find(id, ""); mv != nil {
		// This node is handing the session over: where it goes is known
		// once the buddy answered.
		select {
		case <-mv.done:
		case <-ctx.Done():
		}
	}
	movedTo, movedEpoch, moved := n.moves.get(id)
	if moved && movedTo == "" {
		return nil, nil // it ended here
	}
	if e, ok := n.backups.lookup(id); ok && e.ended {
		// It ended (here, or on its owner, whose buddy this node is): its ID
		// is dead, whatever copy another node still has.
		return nil, nil
	}
	s.movedTo = movedTo
	// A copy older than the cookie's epoch, or than the one under which
	// this node gave the session away, is a stale leftover.
	s.minEpoch = max(route.Epoch, movedEpoch)
	if route.Owner != "" {
		s.ownersBuddy = n.view.buddyOf(route.Owner)
	}
	s.visit(ctx, fetchPlan(n.cfg.ID, route, movedTo, s.ownersBuddy))
	scanned := false
	if !s.settled && !s.ended && !route.Unsaved && !n.misses.has(id, time.Now()) {
		s.scan(ctx)
		scanned = true
	}
	for !s.settled && !s.ended && len(s.pending) > 0 && ctx.Err() == nil {
		// A holder is busy with the session (fetching it, or waiting for
		// its requests): ask it again shortly.
		select {
		case <-ctx.Done():
		case <-time.After(15 * time.Millisecond):
		}
		again := make([]candidate, 0, len(s.pending))
		for pid := range s.pending {
			again = append(again, candidate{pid, SourceOwner})
			delete(s.tried, pid)
		}
		clear(s.pending)
		slices.SortFunc(again, func(a, b candidate) int { return strings.Compare(a.id, b.id) })
		s.visit(ctx, again)
	}
	switch {
	case s.found != nil:
		c := s.found
		s.source = strings.TrimSuffix(s.source, redirected)
		c.Epoch = max(c.Epoch, local.Epoch, route.Epoch) + 1
		// This node owns it from now on: a copy of it held here is stale.
		// (c.ID is not id for a session regenerated within its grace
		// window: the new one came.)
		n.backups.dropOlder(c.ID, c.Epoch)
		n.log.Debug("buddy: session fetched", "id", id, "source", s.source, "epoch", c.Epoch, "version", c.Version)
		n.stats.fetched(s.source)
		n.moves.forget(c.ID)
		return c, nil
	case route.Unsaved || s.ended:
		// Issued before anything was stored, or ended: nothing to lose.
		return nil, nil
	}
	if busy := s.undetermined(); len(busy) > 0 {
		n.stats.fetched(SourceUnavailable)
		return nil, fmt.Errorf("%w: %s did not hand session %s over in time", ErrUndetermined, strings.Join(busy, ", "), id)
	}
	if scanned {
		n.stats.fetched(SourceNone)
		n.misses.add(id, time.Now())
	}
	return nil, nil
}

// search is one Fetch's progress.
type search struct {
	n       *Node
	id      string
	route   core.Route
	local   core.Stamp
	tried   map[string]bool // asked (or known dead)
	silent  map[string]bool // asked, and did not answer
	pending map[string]bool // hold the session but could not hand it over yet
	// redirecting holds the nodes that answered with a redirect.
	redirecting map[string]bool
	named       map[string]bool // silent ones that a node named as holding it (or this node gave it to)
	movedTo     string          // the node this one gave the session to, if any
	ownersBuddy string          // the cookie owner's buddy in this node's ring
	minEpoch    uint64          // copies older than this epoch are stale
	ended       bool            // a node said the session ended
	found       *core.Change    // the newest copy handed over so far
	source      string
	// settled: found came from the owner, or is the backup copy of the
	// owner's buddy in this node's ring, so no other node holds a newer
	// one. A backup copy from any other node (a former buddy of the
	// owner, the node this one gave the session to) may be older than the
	// current buddy's: the search goes on, and keeps the newest.
	settled bool
}

// visit asks the candidates in order until the search is settled;
// redirects are asked next.
func (s *search) visit(ctx context.Context, queue []candidate) {
	for len(queue) > 0 && !s.settled && !s.ended && ctx.Err() == nil {
		c := queue[0]
		queue = queue[1:]
		if s.tried[c.id] {
			continue
		}
		if c.id != s.n.cfg.ID && !s.n.view.answers(c.id) && c.id != s.movedTo && !strings.HasSuffix(c.source, redirected) {
			// Known dead or gone: it holds nothing that counts. (The node
			// this one just gave the session to, or one a node names, is
			// asked all the same: it may have restarted and not pinged
			// this node yet. So a skipped node is not marked tried.)
			continue
		}
		s.tried[c.id] = true
		var rep wire.FetchReply
		var err error
		if c.id == s.n.cfg.ID {
			rep = s.n.takeLocal(s.id)
		} else if rep, err = s.ask(ctx, c.id); err != nil {
			s.silent[c.id] = true
			if strings.HasSuffix(c.source, redirected) || c.id == s.movedTo {
				s.named[c.id] = true
			}
			continue
		}
		s.n.log.Debug("buddy: fetch answer", "id", s.id, "peer", c.id, "status", rep.Status, "redirect", rep.Redirect)
		if next, ok := s.take(c, rep); ok {
			queue = append([]candidate{next}, queue...)
		}
	}
}

// take handles one answer; it returns a node to ask next (a redirect).
func (s *search) take(c candidate, rep wire.FetchReply) (candidate, bool) {
	switch rep.Status {
	case wire.FetchFound:
		if s.acceptable(rep.Copy) && (s.found == nil || stampOf(s.found).Less(stampOf(rep.Copy))) {
			s.found, s.source = rep.Copy, c.source
			s.found.Origin = origin(c.id, rep.Backup)
			s.settled = !rep.Backup || c.id == s.ownersBuddy
		}
	case wire.FetchPending:
		s.pending[c.id] = true
	case wire.FetchEnded:
		s.ended = true
	case wire.FetchRedirect:
		s.redirecting[c.id] = true
		if !s.tried[rep.Redirect] {
			return candidate{rep.Redirect, strings.TrimSuffix(c.source, redirected) + redirected}, true
		}
		if s.redirecting[rep.Redirect] && rep.Redirect != s.n.cfg.ID {
			// Two nodes name each other: the session is moving between
			// them (a handover under way). Ask again shortly.
			s.pending[rep.Redirect] = true
		}
	}
	return candidate{}, false
}

// acceptable reports whether a copy handed over is newer than the one held
// here and not older than the cookie: a copy from before the cookie's
// epoch is a stale leftover, its session's newer copies lost.
func (s *search) acceptable(c *core.Change) bool {
	if c.Epoch < s.minEpoch {
		s.n.log.Warn("buddy: stale copy handed over, ignored", "id", s.id, "epoch", c.Epoch, "cookie_epoch", s.route.Epoch, "min_epoch", s.minEpoch)
		return false
	}
	return s.local.Less(stampOf(c))
}

func stampOf(c *core.Change) core.Stamp { return core.Stamp{Epoch: c.Epoch, Version: c.Version} }

// scan asks every node that may answer and was not asked yet, at once,
// and keeps the newest copy handed over; redirects are followed after.
func (s *search) scan(ctx context.Context) {
	peers := s.n.view.reachable(s.tried)
	if len(peers) == 0 {
		return
	}
	type answer struct {
		id  string
		rep wire.FetchReply
		err error
	}
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		s.tried[p.ID] = true
		wg.Go(func() {
			rep, err := s.ask(ctx, p.ID)
			answers[i] = answer{p.ID, rep, err}
		})
	}
	wg.Wait()
	var next []candidate
	for _, a := range answers {
		if a.err != nil {
			s.silent[a.id] = true
			continue
		}
		if c, ok := s.take(candidate{a.id, SourceScan}, a.rep); ok {
			next = append(next, c)
		}
	}
	if !s.settled {
		s.visit(ctx, next)
	}
}

// undetermined returns the nodes that may hold the session but did not
// hand it over: pending ones, and silent ones not known dead by now.
func (s *search) undetermined() []string {
	var out []string
	for id := range s.pending {
		out = append(out, id)
	}
	for id := range s.silent {
		// A silent node that may answer is undetermined; so is one that a
		// node named as the holder, dead or gone in this node's view or not.
		if (s.n.view.answers(id) || s.named[id]) && !s.pending[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// takeLocal answers this node's own ask for session id from its backup
// copies: the copy, taken for itself, when its owner is gone; a redirect
// to the owner when it lives (it has the newest copy), or to the node
// that took a copy handed out; none otherwise.
func (n *Node) takeLocal(id string) wire.FetchReply {
	unlock := n.handoff.lock(id)
	defer unlock()
	e, ok := n.backups.lookup(id)
	switch {
	case !ok:
		return wire.FetchReply{Status: wire.FetchNone}
	case e.ended:
		return wire.FetchReply{Status: wire.FetchEnded}
	case e.fence:
		return wire.FetchReply{Status: wire.FetchRedirect, Redirect: e.holder}
	case n.ownerLives(e):
		return wire.FetchReply{Status: wire.FetchRedirect, Redirect: e.holder}
	}
	return n.handOutCopy(id, e.holder, n.cfg.ID)
}

// ask asks peer pid for the session, as n.ask does, but an answer that
// comes after ctx ended is not lost: if this fetch gave up waiting while
// the peer gave the session to this node, the session is taken when the
// answer comes (adoptLate). The peer would otherwise hold it no more, nor
// would its buddy, and this node would never have had it.
func (s *search) ask(ctx context.Context, pid string) (wire.FetchReply, error) {
	var (
		mu       sync.Mutex
		gaveUp   bool
		rep      wire.FetchReply
		err      error
		answered = make(chan struct{})
	)
	started := s.n.spawn(func() {
		// Long enough for any peer's hand-over wait (at most a second).
		actx, cancel := context.WithTimeout(s.n.ctx, 2*s.n.cfg.ReplicationTimeout+time.Second)
		defer cancel()
		r, e := s.n.ask(actx, pid, s.id, s.route.Proof)
		mu.Lock()
		late := gaveUp
		rep, err = r, e
		mu.Unlock()
		close(answered)
		if late && e == nil && r.Status == wire.FetchFound {
			r.Copy.Origin = origin(pid, r.Backup)
			s.adoptLate(pid, r.Copy)
		}
	})
	if !started {
		return wire.FetchReply{}, errors.New("buddy: node closed")
	}
	select {
	case <-answered:
	case <-ctx.Done():
		mu.Lock()
		select {
		case <-answered:
		default:
			gaveUp = true
			mu.Unlock()
			return wire.FetchReply{}, ctx.Err()
		}
		mu.Unlock()
	}
	return rep, err
}

// adoptLate takes over a session that peer from gave this node after the
// fetch that asked for it gave up.
func (s *search) adoptLate(from string, c *core.Change) {
	n := s.n
	m := n.mgr.Load()
	if m == nil || !s.acceptable(c) {
		return
	}
	c.Epoch = max(c.Epoch, s.local.Epoch, s.route.Epoch) + 1
	if err := m.Install(c); err != nil {
		n.log.Error("buddy: session handed over too late not taken", "id", s.id, "from", from, "err", err)
		return
	}
	n.backups.dropOlder(s.id, c.Epoch)
	n.moves.forget(s.id)
	n.sender.addResync([]string{s.id})
	n.log.Info("buddy: session handed over after its fetch gave up, taken", "id", s.id, "from", from, "epoch", c.Epoch)
}

// origin says where a copy handed over by node from came from: a backup
// copy (its owner gone) or the owner's own session.
func origin(from string, backup bool) core.Origin {
	if backup {
		return core.Origin{From: from, Reason: core.ReasonFailover}
	}
	return core.Origin{From: from, Reason: core.ReasonHandover}
}

// ask requests session id from peer pid, showing the request's cookie
// (proof); err means it did not answer.
func (n *Node) ask(ctx context.Context, pid, id, proof string) (wire.FetchReply, error) {
	p, known := n.view.peer(pid)
	if !known {
		return wire.FetchReply{}, fmt.Errorf("buddy: unknown peer %q", pid)
	}
	out, _, err := n.call(ctx, p, pathFetch, wire.MsgFetch, wire.AppendFetch(nil, wire.Fetch{Incarnation: n.incarnation, Proof: proof, ID: id}))
	if err == nil {
		var rep wire.FetchReply
		if rep, err = wire.DecodeFetchReply(out, id, n.cfg.Limits); err == nil {
			if rep.Copy != nil {
				// A copy handed over gets the same clock bound as a
				// replicated record: no timestamp from the future.
				clampTimes(rep.Copy, n.cfg.Now())
			}
			return rep, nil
		}
	}
	n.log.Debug("buddy: fetch failed", "peer", pid, "err", err)
	return wire.FetchReply{}, err
}

// missCache remembers IDs nobody held, for a short while, so a client that
// keeps sending a dead session's cookie does not make every request ask
// every node (the targeted asks of the plan still run). Only a definite
// answer is remembered: every node that may answer said it holds none.
// Bounded: when full, it forgets everything.
type missCache struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const (
	missTTL = 30 * time.Second
	missMax = 65536
)

func (c *missCache) has(id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[id]
	return ok && now.Sub(t) < missTTL
}

func (c *missCache) add(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= missMax {
		c.m = make(map[string]time.Time)
	}
	c.m[id] = now
}
