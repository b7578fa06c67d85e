package buddy

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is what a node believes of a peer (PeerStatus.State). Its text
// form, in String and in JSON, is the lower-case name: "unknown", "alive",
// "suspect", "dead", "draining", "left".
type State int

const (
	// Unknown: not heard from since this node started. Not in the ring;
	// asked for sessions all the same.
	Unknown State = iota
	// Alive: answered within SuspectAfter. In the ring.
	Alive
	// Suspect: silent for SuspectAfter; still in the ring.
	Suspect
	// Dead: silent for DeadAfter, or its replication failed. Out of the
	// ring and never asked for sessions, until it answers again.
	Dead
	// Draining: stopping gracefully; it answers, and hands its sessions
	// over, but it is out of the ring.
	Draining
	// Left: gone for good in this incarnation (it announced its departure,
	// handed its sessions over, or Discovery stopped listing it). Out of
	// the ring; a peer that keeps sending authenticated traffic under a
	// new incarnation is alive again.
	Left
)

var stateNames = [...]string{"unknown", "alive", "suspect", "dead", "draining", "left"}

// String returns the state's name: unknown, alive, suspect, dead, draining
// or left.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText implements encoding.TextMarshaler: the state's name, so that
// JSON shows "alive" rather than 1.
func (s State) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("buddy: unknown State %d", int(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a state's name.
func (s *State) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("buddy: unknown state %q", b)
	}
	*s = State(i)
	return nil
}

// inRing: the states whose peers take part in the ring.
func (s State) inRing() bool { return s == Alive || s == Suspect }

// answers: the states whose peers may answer a request.
func (s State) answers() bool { return s != Dead && s != Left }

// PeerStatus is one peer as Stats reports it.
type PeerStatus struct {
	Peer
	// State is what this node believes of the peer; JSON shows its name.
	State State
	// LastOK is when the peer last answered (zero: never).
	LastOK time.Time
	// Mismatch, when not empty, says how the peer's configuration differs
	// from this node's (cookie keys, shared settings): it is kept out of
	// the ring until that is fixed.
	Mismatch string `json:",omitempty"`
}

// peerState is the view's record of one peer.
type peerState struct {
	Peer
	state        State
	undiscovered bool // Left because Discovery stopped listing it
	lastOK       time.Time
	incarnation  uint64 // the peer's start time; a new value means it restarted
	mismatch     string // why its configuration is not compatible; "" when it is
}

// inRing reports whether the peer takes part in the ring.
func (p *peerState) inRing() bool { return p.state.inRing() && p.mismatch == "" }

// view is the membership table: every known peer and its state, and the
// ring computed from them. It does no I/O; all of its state changes go
// through its methods, under its mutex, which is a leaf lock: view
// methods take no other lock.
type view struct {
	self, zone string
	mu         sync.Mutex
	peers      map[string]*peerState
}

func newView(self, zone string, peers []Peer) *view {
	v := &view{self: self, zone: zone, peers: make(map[string]*peerState)}
	for _, p := range peers {
		if p.ID != self {
			v.peers[p.ID] = &peerState{Peer: p}
		}
	}
	return v
}

// change says what a view update changed.
type change struct {
	from, to  State
	restarted bool   // the peer answered under a new incarnation
	mismatch  string // set when the peer's mismatch changed; "ok" when it cleared
}

func (c change) any() bool { return c.from != c.to || c.restarted || c.mismatch != "" }

// heard records an authenticated answer or request from peer id, in
// incarnation inc; draining says it is stopping; mismatch is "" or why its
// configuration differs.
func (v *view) heard(id string, inc uint64, draining bool, mismatch string, now time.Time) (change, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	if !ok {
		return change{}, false
	}
	c := change{from: p.state, restarted: p.incarnation != 0 && inc != 0 && inc != p.incarnation}
	switch {
	case p.undiscovered:
		// Discovery no longer lists it: it stays out.
	case draining:
		if p.state != Left || c.restarted {
			p.state = Draining
		}
	case p.state == Draining && !c.restarted:
		// A node never stops draining: a serving ping from the same run
		// was sent before, and arrived late.
	default:
		// Serving. A peer marked Left that still sends fresh, serving
		// traffic did not leave (a stale or replayed leave): alive again.
		p.state = Alive
	}
	p.lastOK = now
	if inc != 0 {
		p.incarnation = inc
	}
	if mismatch != p.mismatch {
		c.mismatch = mismatch
		if mismatch == "" {
			c.mismatch = "ok"
		}
		p.mismatch = mismatch
	}
	c.to = p.state
	return c, true
}

// silent records that peer id did not answer a ping at now: it turns
// suspect after suspectAfter without an answer and dead after deadAfter.
func (v *view) silent(id string, now time.Time, suspectAfter, deadAfter time.Duration) change {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	if !ok {
		return change{}
	}
	c := change{from: p.state}
	if p.state == Alive || p.state == Suspect || p.state == Draining {
		switch quiet := now.Sub(p.lastOK); {
		case quiet >= deadAfter:
			p.state = Dead
		case quiet >= suspectAfter && p.state == Alive:
			p.state = Suspect
		}
	}
	c.to = p.state
	return c
}

// mark sets peer id's state; a Left mark names the incarnation that left
// (0: whichever is current) and is ignored for an older one.
func (v *view) mark(id string, st State, inc uint64) change {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	if !ok || st == Left && inc != 0 && inc < p.incarnation {
		return change{}
	}
	c := change{from: p.state, to: st}
	p.state = st
	p.incarnation = max(p.incarnation, inc)
	return c
}

// setPeers replaces the peer list (Discovery): new peers are added
// unknown, peers no longer listed leave. It reports whether anything
// changed.
func (v *view) setPeers(peers []Peer, maxIDLen int) (added []string, changed bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range peers {
		if p.ID == v.self || p.ID == "" || len(p.ID) > maxIDLen {
			continue
		}
		seen[p.ID] = true
		if cur, ok := v.peers[p.ID]; ok {
			cur.Peer = p
			if cur.undiscovered {
				cur.state, cur.undiscovered = Unknown, false
				changed = true
			}
			continue
		}
		v.peers[p.ID] = &peerState{Peer: p}
		added = append(added, p.ID)
		changed = true
	}
	for id, p := range v.peers {
		if !seen[id] && p.state != Left {
			p.state, p.undiscovered = Left, true
			changed = true
		}
	}
	return added, changed
}

// peer returns peer id.
func (v *view) peer(id string) (Peer, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	if !ok {
		return Peer{}, false
	}
	return p.Peer, true
}

// configured reports whether any peer is configured (listed by Peers or
// Discovery).
func (v *view) configured() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, p := range v.peers {
		if !p.undiscovered {
			return true
		}
	}
	return false
}

// empty reports whether the node has no peer at all (a single node).
func (v *view) empty() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.peers) == 0
}

// incarnation returns the incarnation peer id last answered under.
func (v *view) incarnation(id string) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p, ok := v.peers[id]; ok {
		return p.incarnation
	}
	return 0
}

// inRing reports whether peer id is in the ring.
func (v *view) inRing(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	return ok && p.inRing()
}

// answers reports whether peer id may answer a request: known, and not
// dead or gone.
func (v *view) answers(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	return ok && p.state.answers()
}

// pingable returns the peers to ping: every configured one, those that
// left included (a node that left may come back under a new incarnation;
// a leaving node's own pongs say it is draining, so they do not revive it).
func (v *view) pingable() []Peer {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Peer, 0, len(v.peers))
	for _, p := range v.peers {
		if !p.undiscovered {
			out = append(out, p.Peer)
		}
	}
	return out
}

// revive records authenticated, fresh traffic other than a ping from
// peer id (a fetch, a batch): a peer believed dead that sends it is alive
// after all. It reports the change.
func (v *view) revive(id string, now time.Time) change {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.peers[id]
	if !ok || p.undiscovered || p.state != Dead {
		return change{} // a node that left may still finish sending: only pings bring it back
	}
	c := change{from: p.state, to: Alive}
	p.state, p.lastOK = Alive, now
	return c
}

// reachable returns the peers that may answer, except those in skip.
func (v *view) reachable(skip map[string]bool) []Peer {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Peer
	for id, p := range v.peers {
		if !skip[id] && p.state.answers() {
			out = append(out, p.Peer)
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ringPeers returns the peers in the ring.
func (v *view) ringPeers() []Peer {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Peer
	for _, p := range v.peers {
		if p.inRing() {
			out = append(out, p.Peer)
		}
	}
	return out
}

// buddyOf returns the buddy of node id in the current ring: its successor
// in ID order among the nodes in the ring, preferring one in another zone.
// When id is not in the ring (dead), it is placed where it would be.
func (v *view) buddyOf(id string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	ids := []string{v.self}
	zone := map[string]string{v.self: v.zone}
	for pid, p := range v.peers {
		zone[pid] = p.Zone
		if p.inRing() {
			ids = append(ids, pid)
		}
	}
	slices.Sort(ids)
	return successor(ids, id, func(x string) string { return zone[x] })
}

// successor returns the node after id in the sorted ring ids (id itself
// excluded, in the ring or not), preferring the first one in another zone
// than id's; "" when no other node is in the ring.
func successor(ids []string, id string, zone func(string) string) string {
	i, found := slices.BinarySearch(ids, id)
	if found {
		i++
	}
	first := ""
	for k := range len(ids) {
		c := ids[(i+k)%len(ids)]
		if c == id {
			continue
		}
		if first == "" {
			first = c
		}
		if zone(c) != zone(id) {
			return c
		}
	}
	return first
}

// statuses returns every peer's status, sorted by ID.
func (v *view) statuses() []PeerStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]PeerStatus, 0, len(v.peers))
	for _, p := range v.peers {
		out = append(out, PeerStatus{Peer: p.Peer, State: p.state, LastOK: p.lastOK, Mismatch: p.mismatch})
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}
