package buddy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/internal/ring"
	"github.com/tandemsession/tandem/buddy/wire"
)

// Member is a node as a Membership reports it.
type Member struct {
	Peer
	// State is Alive, Suspect, Draining, Dead or Left; Unknown counts as
	// Alive.
	State State
	// Incarnation is the node's run, its start time in Unix nanoseconds,
	// as the membership layer carries it; 0 when not known.
	Incarnation uint64
}

// Membership is a membership layer the node trusts for who is in the
// cluster and alive, instead of probing its peers itself (Config.Membership;
// buddy/memberlist implements it on hashicorp/memberlist). The node calls
// Join once from New, Members whenever the layer signals a change (and each
// PingInterval, to find the peers the layer reports alive that this node
// took for dead when their replication failed: those it pings), Leave once
// its drain is done (Shutdown), and Close from Close.
type Membership interface {
	// Join starts the layer for this node, self (its ID, replication
	// address, zone and incarnation), and returns once it has joined the
	// cluster or ctx ended. changed is called after every change of
	// Members, from any goroutine; it does not block.
	Join(ctx context.Context, self Member, changed func()) error
	// Members returns the nodes known, this one included or not.
	Members() []Member
	// Leave tells the cluster that this node leaves, within ctx.
	Leave(ctx context.Context) error
	// Close stops the layer; it returns at once if Join did not run.
	Close() error
}

// joinMembership joins Config.Membership, if set, and takes its first
// answer, so that New returns with the ring known.
func (n *Node) joinMembership() error {
	m := n.cfg.Membership
	if m == nil {
		return nil
	}
	addr := n.cfg.AdvertiseAddr
	if addr == "" {
		addr = n.Addr()
	}
	self := Member{Peer: Peer{ID: n.cfg.ID, Addr: addr, Zone: n.cfg.Zone}, State: Alive, Incarnation: n.incarnation}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	changed := func() {
		select {
		case n.members <- struct{}{}:
		default:
		}
	}
	if err := m.Join(ctx, self, changed); err != nil {
		return fmt.Errorf("buddy: membership: %w", err)
	}
	n.syncMembers()
	return nil
}

// syncMembers applies what Config.Membership says: the peer list, then
// each peer's state.
func (n *Node) syncMembers() {
	m := n.cfg.Membership
	if m == nil {
		n.discover()
		return
	}
	ms := m.Members()
	peers := make([]Peer, 0, len(ms))
	for _, mb := range ms {
		if mb.State != Left || mb.ID == n.cfg.ID {
			peers = append(peers, mb.Peer)
		}
	}
	// A peer that left stays listed (Left), so that a late message of it
	// is known; one gone from the layer altogether leaves.
	for _, mb := range ms {
		if mb.State == Left && mb.ID != n.cfg.ID {
			peers = append(peers, mb.Peer)
		}
	}
	n.setPeers(peers)
	n.discovered.Store(true)
	for _, mb := range ms {
		if mb.ID == n.cfg.ID {
			continue
		}
		st := mb.State
		if st == Unknown {
			st = Alive
		}
		n.applyChange(mb.ID, n.view.observe(mb.ID, st, mb.Incarnation))
	}
}

// Discovery feeds the peer list from a dynamic source (DNS, a service
// registry, hashicorp/memberlist). Peers returns every node of the cluster,
// this one included or not; the node polls it every DiscoveryInterval.
type Discovery interface {
	Peers(ctx context.Context) ([]Peer, error)
}

// fingerprint is what this node's pings say of its configuration.
type fingerprint struct {
	settings uint64
	keys     []uint64
}

// ping returns this node's ping (and pong) payload.
func (n *Node) ping() []byte {
	p := wire.Ping{Incarnation: n.incarnation, Boot: n.boot, Draining: n.draining.Load()}
	if fp := n.fp.Load(); fp != nil {
		p.Settings, p.CookieKeys = fp.settings, fp.keys
	}
	return wire.AppendPing(nil, p)
}

// mismatch says how a peer's configuration, as its ping tells, differs
// from this node's in a way that breaks failover; "" when it does not (or
// either side does not know yet).
func (n *Node) mismatch(p wire.Ping) string {
	fp := n.fp.Load()
	if fp == nil || p.Settings == 0 || len(p.CookieKeys) == 0 || len(fp.keys) == 0 {
		return ""
	}
	if p.Settings != fp.settings {
		return "settings differ (cookie name, idle timeout or lifetime)"
	}
	if !slices.Contains(fp.keys, p.CookieKeys[0]) || !slices.Contains(p.CookieKeys, fp.keys[0]) {
		return "cookie keys differ: a session cookie of one node does not decode on the other"
	}
	return ""
}

// onPing answers a peer's ping and learns from it that the peer is alive.
func (n *Node) onPing(from string, payload []byte) ([]byte, error) {
	p, err := wire.DecodePing(payload)
	if err != nil {
		return nil, malformed(err)
	}
	n.windows.learnBoot(from, p.Boot)
	n.heard(from, p)
	return n.ping(), nil
}

// onHello answers a ping sealed without this node's boot (the peer does
// not know it yet): the pong teaches it. Such a ping may be a replay from
// before this node started, so it changes nothing here.
//
// The peer likely just started: this node pings it back at once, so that
// its state here (its incarnation, alive) is current within a round trip
// rather than a PingInterval.
func (n *Node) onHello(from string, payload []byte) ([]byte, error) {
	if _, err := wire.DecodePing(payload); err != nil {
		return nil, malformed(err)
	}
	if p, ok := n.view.peer(from); ok && n.helloProbes.claim(from) {
		n.spawn(func() {
			defer n.helloProbes.release(from)
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
			defer cancel()
			n.probe(ctx, p)
		})
	}
	return n.ping(), nil
}

// probeSet allows one probe in flight per peer.
type probeSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *probeSet) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]bool)
	}
	if s.m[id] {
		return false
	}
	s.m[id] = true
	return true
}

func (s *probeSet) release(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// bootOf returns peer p's boot nonce, pinging it first when this node does
// not know it yet.
func (n *Node) bootOf(p Peer) (uint64, error) {
	if b := n.windows.boot(p.ID); b != 0 {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
	defer cancel()
	if _, ok := n.probe(ctx, p); !ok {
		return 0, fmt.Errorf("buddy: %s does not answer a ping", p.ID)
	}
	if b := n.windows.boot(p.ID); b != 0 {
		return b, nil
	}
	return 0, fmt.Errorf("buddy: %s did not say its boot", p.ID)
}

// probeLoop runs a probe round every PingInterval (with Config.Membership,
// recheckDown instead), asks Discovery every DiscoveryInterval, and applies
// Membership's changes. A tick that comes much later than due means this
// process was paused (SIGSTOP, a VM freeze) long enough for the peers to
// think it dead: its sessions may have been taken over meanwhile, so it
// sends its buddy every session again, and the buddy fences those that
// moved.
func (n *Node) probeLoop() {
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	disc := time.NewTicker(n.cfg.DiscoveryInterval)
	defer disc.Stop()
	last := time.Now()
	for {
		select {
		case <-n.stop:
			return
		case <-n.probesOff:
			return
		case <-disc.C:
			n.discover()
		case <-n.rediscover:
			n.discover()
		case <-n.members:
			n.syncMembers()
		case now := <-t.C:
			if gap := now.Sub(last); gap > n.cfg.DeadAfter {
				n.stats.pauses.Add(1)
				n.log.Warn("buddy: this node was paused; resending every session to its buddy", "paused", gap.Round(time.Millisecond))
				n.resyncAll()
			}
			last = now
			// A round runs beside the loop (one at a time), so that a
			// slow one delays neither Discovery nor the next tick.
			if n.roundBusy.CompareAndSwap(false, true) {
				round := n.probeRound
				if n.cfg.Membership != nil {
					round = n.recheckDown
				}
				if !n.spawn(func() { defer n.roundBusy.Store(false); round() }) {
					n.roundBusy.Store(false)
				}
			}
		}
	}
}

// recheckDown pings, with Config.Membership, the peers that the layer
// reports alive but that this node took for dead itself (a replication
// that failed, markDown): one that answers is alive again. The node probes
// nobody else in that mode, and the layer, which never saw the peer fail,
// sends no change that would bring it back: a node that had just started
// and refused a peer's first batch (it did not know that peer yet) stayed
// out of the peer's ring until the next membership change.
func (n *Node) recheckDown() {
	var down []Peer
	for _, mb := range n.cfg.Membership.Members() {
		if mb.ID == n.cfg.ID || mb.State != Alive && mb.State != Suspect && mb.State != Unknown {
			continue
		}
		if p, ok := n.view.peer(mb.ID); ok && !n.view.answers(mb.ID) {
			down = append(down, p)
		}
	}
	var wg sync.WaitGroup
	for _, p := range down {
		wg.Go(func() { n.pingNow(p.ID) })
	}
	wg.Wait()
}

// The failure detector's fan-out (PROTOCOL.md section 4c): each round
// pings the probeNeighbours nearest peers on each side in ID order and
// probeRandom random ones (and every peer never heard from); a peer that
// does not answer is pinged through probeHelpers others before it counts
// as silent.
const (
	probeNeighbours = 1
	probeRandom     = 3
	probeHelpers    = 3
)

// probeAll pings every peer at once and waits for the answers (the first
// round, so that the node starts knowing its ring).
func (n *Node) probeAll() { n.probeEach(n.view.pingable(), false) }

// probeRound checks a bounded set of peers: the work per node does not grow
// with the cluster.
func (n *Node) probeRound() {
	n.rounds.Add(1)
	n.probeEach(n.view.probeTargets(probeNeighbours, probeRandom), true)
}

func (n *Node) probeEach(peers []Peer, indirect bool) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			if indirect {
				n.check(p)
				return
			}
			ctx, cancel := context.WithTimeout(n.ctx, n.pingTimeout())
			defer cancel()
			n.probe(ctx, p)
		})
	}
	wg.Wait()
}

func (n *Node) pingTimeout() time.Duration { return max(n.cfg.PingInterval, 100*time.Millisecond) }

// probe pings p once and records the outcome; it returns the pong, or
// false when p did not answer.
func (n *Node) probe(ctx context.Context, p Peer) (wire.Ping, bool) {
	if pong, ok := n.pingOnce(ctx, p); ok {
		return pong, true
	}
	n.applyChange(p.ID, n.view.silent(p.ID, n.cfg.SuspectAfter, n.cfg.DeadAfter))
	return wire.Ping{}, false
}

// pingOnce pings p and records an answer; it records nothing when p does
// not answer.
func (n *Node) pingOnce(ctx context.Context, p Peer) (wire.Ping, bool) {
	out, _, err := n.call(ctx, p, pathPing, wire.MsgPing, n.ping())
	if err != nil {
		n.log.Debug("buddy: ping failed", "peer", p.ID, "err", err)
		return wire.Ping{}, false
	}
	pong, err := wire.DecodePing(out)
	if err != nil {
		return wire.Ping{}, false
	}
	n.windows.learnBoot(p.ID, pong.Boot)
	n.heard(p.ID, pong)
	return pong, true
}

// check pings p; when p does not answer and is in the ring, it asks
// probeHelpers other nodes to ping it (a one-way cut between this node and
// p does not make p dead here while others reach it). Only when none of
// them got an answer is p silent; a peer found dead that way is told to
// every other peer (spreadRumour), so that the nodes agree on the ring.
func (n *Node) check(p Peer) {
	wasDead := !n.view.answers(p.ID)
	ctx, cancel := context.WithTimeout(n.ctx, n.pingTimeout())
	pong, ok := n.pingOnce(ctx, p)
	cancel()
	if ok {
		if wasDead && n.view.inRing(p.ID) {
			// Back: the nodes that took it dead learn it now, not when
			// their own probes happen to reach it.
			n.spreadRumour(p.ID, pong.Incarnation, true)
		}
		return
	}
	if n.view.inRing(p.ID) {
		if n.indirect(p) {
			return
		}
	}
	c := n.view.silent(p.ID, n.cfg.SuspectAfter, n.cfg.DeadAfter)
	n.applyChange(p.ID, c)
	if c.To == ring.Dead && c.From != ring.Dead {
		n.spreadRumour(p.ID, n.view.incarnation(p.ID), false)
	}
}

// indirect asks up to probeHelpers peers to ping p for this node; it
// reports whether one of them got an answer, and records it.
func (n *Node) indirect(p Peer) bool {
	// Helpers whose boot is known: one that needs a ping first would not
	// answer within the round.
	helpers := slices.DeleteFunc(n.view.helpers(p.ID, 2*probeHelpers), func(h Peer) bool { return n.windows.boot(h.ID) == 0 })
	helpers = helpers[:min(len(helpers), probeHelpers)]
	if len(helpers) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, 2*n.pingTimeout())
	defer cancel()
	got := make(chan wire.ProbeReply, len(helpers))
	req := wire.AppendProbe(nil, wire.Probe{Target: p.ID})
	for _, h := range helpers {
		go func() {
			out, _, err := n.call(ctx, h, pathProbe, wire.MsgProbe, req)
			var r wire.ProbeReply
			if err == nil {
				r, _ = wire.DecodeProbeReply(out)
			}
			got <- r
		}()
	}
	for range helpers {
		if r := <-got; r.OK {
			if c, ok := n.view.vouched(p.ID, r.Incarnation, r.Draining); ok {
				n.applyChange(p.ID, c)
			}
			return true // the other calls end with ctx
		}
	}
	return false
}

// onProbe pings a peer for another node (an indirect probe).
func (n *Node) onProbe(from string, payload []byte) ([]byte, error) {
	req, err := wire.DecodeProbe(payload)
	if err != nil {
		return nil, malformed(err)
	}
	if req.Target == n.cfg.ID {
		return wire.AppendProbeReply(nil, wire.ProbeReply{OK: true, Incarnation: n.incarnation, Draining: n.draining.Load()}), nil
	}
	p, known := n.view.peer(req.Target)
	if !known || req.Target == from {
		return wire.AppendProbeReply(nil, wire.ProbeReply{}), nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.pingTimeout())
	defer cancel()
	pong, ok := n.pingOnce(ctx, p)
	return wire.AppendProbeReply(nil, wire.ProbeReply{OK: ok, Incarnation: pong.Incarnation, Draining: pong.Draining}), nil
}

// spreadRumour tells every peer that may answer that peer id, in run inc,
// is dead (or alive again). It runs once per change, not every round.
func (n *Node) spreadRumour(id string, inc uint64, alive bool) {
	if inc == 0 {
		return
	}
	msg := wire.AppendRumour(nil, wire.Rumour{Target: id, Incarnation: inc, Alive: alive})
	for _, p := range n.view.reachable(map[string]bool{id: true}) {
		n.spawn(func() {
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
			defer cancel()
			if _, _, err := n.call(ctx, p, pathRumour, wire.MsgRumour, msg); err != nil {
				n.log.Debug("buddy: rumour not delivered", "peer", p.ID, "dead", id, "err", err)
			}
		})
	}
}

// onRumour takes another node's word that a peer is dead, unless this
// node heard from it within SuspectAfter or it answers a ping of this
// node's; a peer taken dead so is alive again once it answers this node.
func (n *Node) onRumour(from string, payload []byte) ([]byte, error) {
	r, err := wire.DecodeRumour(payload)
	if err != nil {
		return nil, malformed(err)
	}
	if r.Target == n.cfg.ID {
		n.log.Warn("buddy: a peer found this node dead", "peer", from)
		return nil, nil
	}
	p, known := n.view.peer(r.Target)
	if !known {
		return nil, nil
	}
	if r.Alive {
		if !n.view.answers(r.Target) && n.helloProbes.claim(r.Target) {
			// Dead here: a ping of its own brings it back if it answers.
			n.spawn(func() {
				defer n.helloProbes.release(r.Target)
				ctx, cancel := context.WithTimeout(n.ctx, n.pingTimeout())
				defer cancel()
				n.pingOnce(ctx, p)
			})
		}
		return nil, nil
	}
	if !n.view.answers(r.Target) || n.view.quiet(r.Target) < n.cfg.SuspectAfter && n.view.inRing(r.Target) {
		return nil, nil // dead here already, or it answered this node a moment ago
	}
	// One ping of its own first: a node slow to answer one peer is not
	// taken out of every ring for it.
	n.spawn(func() {
		ctx, cancel := context.WithTimeout(n.ctx, n.pingTimeout())
		defer cancel()
		if _, ok := n.pingOnce(ctx, p); ok {
			return
		}
		if c, taken := n.view.rumour(r.Target, r.Incarnation, n.cfg.SuspectAfter); taken {
			n.log.Info("buddy: peer found dead by another node", "peer", r.Target, "by", from)
			n.applyChange(r.Target, c)
		}
	})
	return nil, nil
}

// heard records an authenticated ping or pong from peer id.
func (n *Node) heard(id string, p wire.Ping) {
	if c, ok := n.view.heard(id, p.Incarnation, p.Draining, n.mismatch(p)); ok {
		n.applyChange(id, c)
	}
}

// pingNow pings peer id once, when this node knows it: an answer within
// the ping timeout tells the view that it lives and the incarnation it
// runs as now; no answer changes nothing.
func (n *Node) pingNow(id string) {
	p, ok := n.view.peer(id)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.pingTimeout())
	defer cancel()
	n.pingOnce(ctx, p)
}

// markDown records that peer id is dead without waiting for DeadAfter
// (its replication failed, or it failed to take a handover).
func (n *Node) markDown(id string) { n.applyChange(id, n.view.mark(id, Dead, 0)) }

// markLeft records that peer id, in incarnation inc (0: the current one),
// left the cluster.
func (n *Node) markLeft(id string, inc uint64) { n.applyChange(id, n.view.mark(id, Left, inc)) }

// applyChange logs a change of a peer's state and recomputes the ring.
func (n *Node) applyChange(id string, c change) {
	if !c.Any() {
		return
	}
	if c.From != c.To {
		n.log.Info("buddy: peer state", "peer", id, "from", State(c.From), "to", State(c.To))
	}
	// The ring first: once the counter shows a mismatch, the peer is no
	// buddy any more.
	n.reconfigure(c.Restarted, id)
	switch c.Mismatch {
	case "":
	case "ok":
		n.log.Info("buddy: peer configuration matches again", "peer", id)
	default:
		n.stats.mismatches.Add(1)
		n.log.Error("buddy: peer is misconfigured and is not used as a buddy", "peer", id, "mismatch", c.Mismatch)
	}
}

// reconfigure recomputes this node's buddy after a membership change. A new
// buddy (or a restarted one) gets every session as a full copy; the old one,
// if still alive, drops its copies once the new one has them.
//
// Calls are serialized, from reading the ring to switching the sender and
// storing the location: two changes at once (a probe's and a handler's)
// could otherwise both read the ring, and the one that read it first
// switch last, leaving the sender on a buddy the ring no longer names
// until the next change.
func (n *Node) reconfigure(restarted bool, who string) {
	n.reconfig.Lock()
	defer n.reconfig.Unlock()
	n.stats.ringChanges.Add(1)
	var next Peer
	if id := n.view.buddyOf(n.cfg.ID); id != "" {
		next, _ = n.view.peer(id)
	}
	// Every session's ID is listed before the switch (listing takes store
	// locks, which must not be taken under the sender's lock) and once more
	// after it, for sessions created meanwhile.
	old, _, switched := n.sender.switchTo(next, n.sessionIDs(), restarted && who == next.ID)
	if !switched {
		return
	}
	if next.ID != "" {
		n.sender.addResync(n.sessionIDs())
	}
	n.location.Store(&[2]string{n.cfg.ID, next.ID})
	if next.ID == "" {
		n.log.Warn("buddy: running alone, sessions have no backup", "lost", old.ID)
		return
	}
	n.log.Info("buddy: new buddy, sending it every session", "buddy", next.ID, "previous", old.ID)
	n.releaseOld()
}

// discover refreshes the peer list from Config.Discovery.
func (n *Node) discover() {
	if n.cfg.Discovery == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	peers, err := n.cfg.Discovery.Peers(ctx)
	if err != nil {
		n.log.Warn("buddy: discovery failed", "err", err)
		return
	}
	n.discovered.Store(true)
	n.setPeers(peers)
}

// setPeers replaces the peer list. A peer at a new address is a new
// process: its boot is learned anew, and a buddy's stream is dialled anew.
func (n *Node) setPeers(peers []Peer) {
	added, moved, changed := n.view.setPeers(peers, wire.MaxIDLen)
	for _, id := range added {
		n.windows.add(id)
	}
	for _, id := range moved {
		n.windows.forgetBoot(id, n.windows.boot(id))
		if n.sender.buddy().ID == id {
			n.reconfigure(true, id)
			changed = false
		}
	}
	if changed {
		n.reconfigure(false, "")
	}
}

// discoverSoon asks Discovery (or the membership layer) again now, at most
// once a second: an authenticated peer this node does not know may be a
// new node.
func (n *Node) discoverSoon() {
	if n.cfg.Discovery == nil && n.cfg.Membership == nil {
		return
	}
	now := time.Now().UnixNano()
	last := n.lastAsked.Load()
	if now-last < int64(time.Second) || !n.lastAsked.CompareAndSwap(last, now) {
		return
	}
	ch := n.rediscover
	if n.cfg.Membership != nil {
		ch = n.members
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Peers returns the node's view of the cluster.
func (n *Node) Peers() []PeerStatus { return n.view.statuses() }
