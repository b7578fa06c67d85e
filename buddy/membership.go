package buddy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
)

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

// probeLoop pings every peer every PingInterval. A tick that comes much
// later than due means this process was paused (SIGSTOP, a VM freeze)
// long enough for the peers to think it dead: its sessions may have been
// taken over meanwhile, so it sends its buddy every session again, and the
// buddy fences those that moved.
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
		case now := <-t.C:
			if gap := now.Sub(last); gap > n.cfg.DeadAfter {
				n.stats.pauses.Add(1)
				n.log.Warn("buddy: this node was paused; resending every session to its buddy", "paused", gap.Round(time.Millisecond))
				n.resyncAll()
			}
			last = now
			n.probeAll()
		}
	}
}

// probeAll pings every peer at once and waits for the answers.
func (n *Node) probeAll() {
	var wg sync.WaitGroup
	for _, p := range n.view.pingable() {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(n.ctx, max(n.cfg.PingInterval, 100*time.Millisecond))
			defer cancel()
			n.probe(ctx, p)
		})
	}
	wg.Wait()
}

// probe pings p once and records the outcome; it returns the pong, or
// false when p did not answer.
func (n *Node) probe(ctx context.Context, p Peer) (wire.Ping, bool) {
	out, _, err := n.call(ctx, p, pathPing, wire.MsgPing, n.ping())
	if err == nil {
		if pong, derr := wire.DecodePing(out); derr == nil {
			n.windows.learnBoot(p.ID, pong.Boot)
			n.heard(p.ID, pong)
			return pong, true
		}
	}
	n.applyChange(p.ID, n.view.silent(p.ID, n.cfg.SuspectAfter, n.cfg.DeadAfter))
	return wire.Ping{}, false
}

// heard records an authenticated ping or pong from peer id.
func (n *Node) heard(id string, p wire.Ping) {
	if c, ok := n.view.heard(id, p.Incarnation, p.Draining, n.mismatch(p)); ok {
		n.applyChange(id, c)
	}
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
	switch c.Mismatch {
	case "":
	case "ok":
		n.log.Info("buddy: peer configuration matches again", "peer", id)
	default:
		n.stats.mismatches.Add(1)
		n.log.Error("buddy: peer is misconfigured and is not used as a buddy", "peer", id, "mismatch", c.Mismatch)
	}
	n.reconfigure(c.Restarted, id)
}

// reconfigure recomputes this node's buddy after a membership change. A new
// buddy (or a restarted one) gets every session as a full copy; the old one,
// if still alive, drops its copies once the new one has them.
func (n *Node) reconfigure(restarted bool, who string) {
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
	added, _, changed := n.view.setPeers(peers, wire.MaxIDLen)
	for _, id := range added {
		n.windows.add(id)
	}
	if changed {
		n.reconfigure(false, "")
	}
}

// Peers returns the node's view of the cluster.
func (n *Node) Peers() []PeerStatus { return n.view.statuses() }
