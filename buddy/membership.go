package buddy

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"
)

// State is what a node believes of a peer (PeerStatus.State). Its text
// form, in String and in JSON, is the lower-case name: "unknown", "alive",
// "suspect", "dead", "left".
type State int

const (
	// Unknown: never heard from since this node started (not started yet,
	// or unreachable since). Not in the ring.
	Unknown State = iota
	// Alive: answered a ping within SuspectAfter. In the ring.
	Alive
	// Suspect: no answer for SuspectAfter; still in the ring, so a short
	// pause moves no session.
	Suspect
	// Dead: no answer for DeadAfter (or a drain's handover to it failed);
	// out of the ring, and its sessions are taken over from their backups
	// when asked for.
	Dead
	// Left: announced a graceful departure, is draining, or was dropped by
	// Discovery; out of the ring.
	Left
)

var stateNames = [...]string{"unknown", "alive", "suspect", "dead", "left"}

// String returns the state's lower-case name.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

func (s State) inRing() bool { return s == Alive || s == Suspect }

// Discovery feeds the peer list from a dynamic source (DNS, a service
// registry, hashicorp/memberlist). Peers returns every node of the cluster,
// this one included or not; the node polls it every DiscoveryInterval.
type Discovery interface {
	Peers(ctx context.Context) ([]Peer, error)
}

// peerState is the node's view of one peer.
type peerState struct {
	Peer
	state        State
	undiscovered bool // Left because Discovery stopped listing it
	lastOK       time.Time
	incarnation  uint64 // the peer's start time; a new value means it restarted
}

// PeerStatus is one peer as Stats reports it.
type PeerStatus struct {
	Peer
	// State is what this node believes of the peer; JSON shows its name.
	State State
	// LastOK is when the peer last answered (zero: never).
	LastOK time.Time
}

// view is the membership table.
type view struct {
	mu    sync.Mutex
	peers map[string]*peerState
}

// ping payload: incarnation uvarint | state byte (0 serving, 1 draining).
func appendPing(dst []byte, incarnation uint64, draining bool) []byte {
	dst = binary.AppendUvarint(dst, incarnation)
	if draining {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func decodePing(b []byte) (incarnation uint64, draining bool, err error) {
	inc, k := binary.Uvarint(b)
	if k <= 0 || len(b) != k+1 || b[k] > 1 {
		return 0, false, fmt.Errorf("%w: ping payload", ErrMalformed)
	}
	return inc, b[k] == 1, nil
}

// onPing answers a peer's ping and learns from it that the peer is alive.
func (n *Node) onPing(from string, payload []byte) ([]byte, error) {
	inc, draining, err := decodePing(payload)
	if err != nil {
		return nil, malformed(err)
	}
	n.observe(from, inc, draining, true)
	return appendPing(nil, n.incarnation, n.draining.Load()), nil
}

// probeLoop pings every peer every PingInterval.
func (n *Node) probeLoop() {
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	disc := time.NewTicker(n.cfg.DiscoveryInterval)
	defer disc.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-disc.C:
			n.discover()
		case <-t.C:
			n.probeAll()
		}
	}
}

// probeAll pings every known peer at once and waits for the answers.
func (n *Node) probeAll() {
	n.view.mu.Lock()
	peers := make([]Peer, 0, len(n.view.peers))
	for _, p := range n.view.peers {
		if p.state != Left {
			peers = append(peers, p.Peer)
		}
	}
	n.view.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(n.ctx, max(n.cfg.PingInterval, 100*time.Millisecond))
			defer cancel()
			out, _, err := n.call(ctx, p, pathPing, MsgPing, appendPing(nil, n.incarnation, n.draining.Load()))
			if err == nil {
				inc, draining, derr := decodePing(out)
				if derr == nil {
					n.observe(p.ID, inc, draining, true)
					return
				}
			}
			n.observe(p.ID, 0, false, false)
		})
	}
	wg.Wait()
}

// observe records the outcome of a ping to or from a peer and recomputes
// the ring when a state changed.
func (n *Node) observe(id string, incarnation uint64, draining, ok bool) {
	now := time.Now()
	n.view.mu.Lock()
	p, known := n.view.peers[id]
	if !known {
		n.view.mu.Unlock()
		return
	}
	old, oldInc := p.state, p.incarnation
	switch {
	case ok && draining:
		p.state = Left
		p.lastOK = now
	case ok:
		if p.state != Left || incarnation != p.incarnation {
			p.state = Alive
		}
		p.lastOK = now
		p.incarnation = incarnation
	case p.state == Alive || p.state == Suspect:
		silent := now.Sub(p.lastOK)
		if silent >= n.cfg.DeadAfter {
			p.state = Dead
		} else if silent >= n.cfg.SuspectAfter {
			p.state = Suspect
		}
	}
	now2 := p.state
	changed := old != now2
	restarted := ok && oldInc != 0 && incarnation != oldInc
	n.view.mu.Unlock()
	if changed {
		n.log.Info("buddy: peer state", "peer", id, "from", old, "to", now2)
	}
	if changed || restarted {
		n.reconfigure(restarted, id)
	}
}

// markDown records that a peer is dead without waiting for DeadAfter.
func (n *Node) markDown(id string) { n.mark(id, Dead) }

// markLeft records that a peer announced its departure.
func (n *Node) markLeft(id string) { n.mark(id, Left) }

func (n *Node) mark(id string, st State) {
	n.view.mu.Lock()
	p, ok := n.view.peers[id]
	if ok {
		p.state = st
	}
	n.view.mu.Unlock()
	if ok {
		n.reconfigure(false, id)
	}
}

// alive reports whether peer id is in the ring.
func (n *Node) alive(id string) bool {
	n.view.mu.Lock()
	defer n.view.mu.Unlock()
	p, ok := n.view.peers[id]
	return ok && p.state.inRing()
}

// peer returns the peer named id.
func (n *Node) peer(id string) (Peer, bool) {
	n.view.mu.Lock()
	defer n.view.mu.Unlock()
	p, ok := n.view.peers[id]
	if !ok {
		return Peer{}, false
	}
	return p.Peer, true
}

// ringLocked returns the IDs in the ring (this node included), sorted.
func (n *Node) ringLocked() []string {
	ids := []string{n.cfg.ID}
	for id, p := range n.view.peers {
		if p.state.inRing() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// buddyOf returns the buddy of node id in the current ring: its successor
// in ID order, preferring one in another zone. When id is not in the ring
// (dead), it is placed where it would be.
func (n *Node) buddyOf(id string) string {
	n.view.mu.Lock()
	defer n.view.mu.Unlock()
	return n.buddyOfLocked(id)
}

func (n *Node) buddyOfLocked(id string) string {
	ids := n.ringLocked()
	i, found := slices.BinarySearch(ids, id)
	if found {
		i++
	}
	zone := func(x string) string {
		if x == n.cfg.ID {
			return n.cfg.Zone
		}
		if p, ok := n.view.peers[x]; ok {
			return p.Zone
		}
		return ""
	}
	var ring []string
	for k := range len(ids) {
		if c := ids[(i+k)%len(ids)]; c != id {
			ring = append(ring, c)
		}
	}
	if len(ring) == 0 {
		return ""
	}
	for _, c := range ring {
		if zone(c) != zone(id) {
			return c
		}
	}
	return ring[0]
}

// reconfigure recomputes this node's buddy after a membership change. A new
// buddy (or a restarted one) gets every session as a full copy; the old one,
// if still alive, drops its copies once the new one has them.
func (n *Node) reconfigure(restarted bool, who string) {
	n.stats.ringChanges.Add(1)
	newID := n.buddyOf(n.cfg.ID)
	var next Peer
	if newID != "" {
		next, _ = n.peer(newID)
	}
	// Every session, in full, to the new buddy. The IDs are listed before
	// the switch (listing takes store locks, which must not be taken under
	// s.mu) and queued in the same step as the switch, so a Flush that sees
	// the new buddy waits for them; a second pass after the switch catches
	// sessions created meanwhile.
	ids := n.sessionIDs()
	s := n.sender
	s.mu.Lock()
	old := s.to
	if old.ID == next.ID && !(restarted && who == next.ID) {
		s.mu.Unlock()
		return
	}
	s.to = next
	s.generation++
	gen := s.generation
	if next.ID != "" {
		for _, id := range ids {
			s.resync[id] = struct{}{}
		}
	}
	s.mu.Unlock()
	if next.ID != "" {
		s.addResync(n.sessionIDs())
	}
	s.signal()
	n.location.Store(&[2]string{n.cfg.ID, next.ID})
	switch {
	case next.ID == "":
		n.log.Warn("buddy: running alone, sessions have no backup", "lost", old.ID)
	default:
		n.log.Info("buddy: new buddy, sending it every session", "buddy", next.ID, "previous", old.ID)
		n.releaseOld(old, gen)
	}
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
	n.setPeers(peers)
}

// setPeers replaces the peer list; peers that disappear leave the ring.
func (n *Node) setPeers(peers []Peer) {
	n.view.mu.Lock()
	seen := map[string]bool{}
	changed := false
	for _, p := range peers {
		if p.ID == n.cfg.ID || p.ID == "" || len(p.ID) > MaxIDLen {
			continue
		}
		seen[p.ID] = true
		if cur, ok := n.view.peers[p.ID]; ok {
			cur.Peer = p
			if cur.undiscovered {
				cur.state, cur.undiscovered = Unknown, false
			}
			continue
		}
		n.view.peers[p.ID] = &peerState{Peer: p}
		n.windows.add(p.ID)
		changed = true
	}
	for id, p := range n.view.peers {
		if !seen[id] && p.state != Left {
			p.state, p.undiscovered = Left, true
			changed = true
		}
	}
	n.view.mu.Unlock()
	if changed {
		n.reconfigure(false, "")
	}
}

// Peers returns the node's view of the cluster.
func (n *Node) Peers() []PeerStatus {
	n.view.mu.Lock()
	defer n.view.mu.Unlock()
	out := make([]PeerStatus, 0, len(n.view.peers))
	for _, p := range n.view.peers {
		out = append(out, PeerStatus{Peer: p.Peer, State: p.state, LastOK: p.lastOK})
	}
	slices.SortFunc(out, func(a, b PeerStatus) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}
