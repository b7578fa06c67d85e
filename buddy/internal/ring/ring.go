// Package ring is the buddy ring's membership table: every known peer, its
// state, and the ring computed from them (the zone-aware successor, the
// peers that may answer). It does no I/O and reads the time only through
// the clock it is given, so every transition is table-tested.
//
// All of a Table's state changes go through its methods, under its mutex,
// which is a leaf lock: Table methods take no other lock.
package ring

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is what a node believes of a peer; buddy.State mirrors its values.
type State int

// The states, in buddy.State's order.
const (
	Unknown State = iota
	Alive
	Suspect
	Dead
	Draining
	Left
)

// InRing: the states whose peers take part in the ring.
func (s State) InRing() bool { return s == Alive || s == Suspect }

// Answers: the states whose peers may answer a request.
func (s State) Answers() bool { return s != Dead && s != Left }

// Peer is one node: the same fields as buddy.Peer, so each converts to
// the other.
type Peer struct {
	ID   string
	Addr string
	Zone string
}

// Status is one peer's record as Statuses reports it.
type Status struct {
	Peer
	State    State
	LastOK   time.Time
	Mismatch string
}

// peerState is the table's record of one peer.
type peerState struct {
	Peer
	state        State
	undiscovered bool // Left because Discovery stopped listing it
	lastOK       time.Time
	failing      time.Time // since when its probes fail; zero while it answers
	incarnation  uint64    // the peer's start time; a new value means it restarted
	mismatch     string    // why its configuration is not compatible; "" when it is
}

func (p *peerState) inRing() bool { return p.state.InRing() && p.mismatch == "" }

// Table is the membership table.
type Table struct {
	self, zone string
	now        func() time.Time
	mu         sync.Mutex
	peers      map[string]*peerState
}

// New returns a table for node self in zone, knowing peers (self among
// them or not); now is its clock (nil: time.Now).
func New(self, zone string, peers []Peer, now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	t := &Table{self: self, zone: zone, now: now, peers: make(map[string]*peerState)}
	for _, p := range peers {
		if p.ID != self {
			t.peers[p.ID] = &peerState{Peer: p}
		}
	}
	return t
}

// Change says what an update changed.
type Change struct {
	From, To  State
	Restarted bool   // the peer answered under a new incarnation
	Mismatch  string // set when the peer's mismatch changed; "ok" when it cleared
}

// Any reports whether anything changed.
func (c Change) Any() bool { return c.From != c.To || c.Restarted || c.Mismatch != "" }

// Heard records an authenticated answer or request from peer id, in
// incarnation inc; draining says it is stopping; mismatch is "" or why its
// configuration differs. It reports false for an unknown peer.
func (t *Table) Heard(id string, inc uint64, draining bool, mismatch string) (Change, bool) {
	return t.heard(id, inc, draining, &mismatch)
}

// Vouched records that another node got an answer from peer id for this
// one (an indirect probe): as Heard, the peer's mismatch left as it is.
func (t *Table) Vouched(id string, inc uint64, draining bool) (Change, bool) {
	return t.heard(id, inc, draining, nil)
}

func (t *Table) heard(id string, inc uint64, draining bool, mismatch *string) (Change, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok {
		return Change{}, false
	}
	c := Change{From: p.state, Restarted: p.incarnation != 0 && inc != 0 && inc != p.incarnation}
	switch {
	case p.undiscovered:
		// Discovery no longer lists it: it stays out.
	case draining:
		if p.state != Left || c.Restarted {
			p.state = Draining
		}
	case p.state == Draining && !c.Restarted:
		// A node never stops draining: a serving ping from the same run
		// was sent before, and arrived late.
	default:
		// Serving. A peer marked Left that still sends fresh, serving
		// traffic did not leave (a stale or replayed leave): alive again.
		p.state = Alive
	}
	p.lastOK, p.failing = t.now(), time.Time{}
	if inc != 0 {
		p.incarnation = inc
	}
	if mismatch != nil && *mismatch != p.mismatch {
		c.Mismatch = *mismatch
		if *mismatch == "" {
			c.Mismatch = "ok"
		}
		p.mismatch = *mismatch
	}
	c.To = p.state
	return c, true
}

// Silent records that peer id did not answer a probe: it turns suspect
// after suspectAfter without an answer and dead after deadAfter, counted
// from its last answer or, when that is older (a peer not probed every
// round), from the first probe that failed since.
func (t *Table) Silent(id string, suspectAfter, deadAfter time.Duration) Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok {
		return Change{}
	}
	c := Change{From: p.state}
	now := t.now()
	if p.failing.IsZero() {
		p.failing = now
	}
	if p.state == Alive || p.state == Suspect || p.state == Draining {
		since := p.lastOK
		if p.failing.After(since) {
			since = p.failing
		}
		switch quiet := now.Sub(since); {
		case quiet >= deadAfter:
			p.state = Dead
		case quiet >= suspectAfter && p.state == Alive:
			p.state = Suspect
		}
	}
	c.To = p.state
	return c
}

// Quiet returns how long peer id has not answered (0 for an unknown peer
// or one never heard from).
func (t *Table) Quiet(id string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok || p.lastOK.IsZero() {
		return 0
	}
	return t.now().Sub(p.lastOK)
}

// Mark sets peer id's state; a Left mark names the incarnation that left
// (0: whichever is current) and is ignored for an older one.
func (t *Table) Mark(id string, st State, inc uint64) Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok || st == Left && inc != 0 && inc < p.incarnation {
		return Change{}
	}
	c := Change{From: p.state, To: st}
	p.state = st
	p.incarnation = max(p.incarnation, inc)
	return c
}

// Rumour records that another node declared peer id's run inc dead. It is
// taken unless this node heard from a newer run, or from this one within
// fresh (it then answers this node: the rumour's sender is cut off from
// it, not the cluster). A peer taken dead by rumour is alive again as soon
// as it answers this node (dead peers are probed every round). It reports
// the change and whether the rumour was taken.
func (t *Table) Rumour(id string, inc uint64, fresh time.Duration) (Change, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok || inc == 0 || inc < p.incarnation || p.undiscovered || p.state == Left {
		return Change{}, false
	}
	if p.state != Dead && !p.lastOK.IsZero() && t.now().Sub(p.lastOK) < fresh {
		return Change{}, false
	}
	c := Change{From: p.state, To: Dead}
	p.state, p.incarnation = Dead, inc
	return c, true
}

// Observe records what a membership layer (Config.Membership) says of
// peer id: its state (Alive, Suspect, Draining, Dead or Left) and its
// incarnation (0: not known). Alive and Suspect count as an answer now.
func (t *Table) Observe(id string, st State, inc uint64) Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok || p.undiscovered {
		return Change{}
	}
	c := Change{From: p.state, Restarted: p.incarnation != 0 && inc != 0 && inc > p.incarnation}
	if inc != 0 && inc < p.incarnation {
		return Change{} // news of an older run
	}
	switch {
	case st == Alive && p.state == Draining && !c.Restarted:
		// a node never stops draining
	case st == Dead && p.state == Left && !c.Restarted:
		// it left (its leave came first): gone, not dead
	default:
		p.state = st
	}
	if st.InRing() {
		p.lastOK, p.failing = t.now(), time.Time{}
	}
	if inc != 0 {
		p.incarnation = inc
	}
	c.To = p.state
	return c
}

// SetPeers replaces the peer list (Discovery): new peers are added
// unknown, peers no longer listed leave. It returns the peers added and
// those whose address changed, and whether anything changed.
func (t *Table) SetPeers(peers []Peer, maxIDLen int) (added, moved []string, changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range peers {
		if p.ID == t.self || p.ID == "" || len(p.ID) > maxIDLen {
			continue
		}
		seen[p.ID] = true
		if cur, ok := t.peers[p.ID]; ok {
			if cur.Addr != p.Addr {
				moved = append(moved, p.ID)
			}
			if cur.Zone != p.Zone {
				changed = true
			}
			cur.Peer = p
			if cur.undiscovered {
				cur.state, cur.undiscovered = Unknown, false
				changed = true
			}
			continue
		}
		t.peers[p.ID] = &peerState{Peer: p}
		added = append(added, p.ID)
		changed = true
	}
	for id, p := range t.peers {
		if !seen[id] && p.state != Left {
			p.state, p.undiscovered = Left, true
			changed = true
		}
	}
	return added, moved, changed
}

// Peer returns peer id.
func (t *Table) Peer(id string) (Peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok {
		return Peer{}, false
	}
	return p.Peer, true
}

// Configured reports whether any peer is listed (by the static list or
// Discovery).
func (t *Table) Configured() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.peers {
		if !p.undiscovered {
			return true
		}
	}
	return false
}

// Empty reports whether the node has no peer at all (a single node).
func (t *Table) Empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.peers) == 0
}

// Incarnation returns the incarnation peer id last answered under.
func (t *Table) Incarnation(id string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		return p.incarnation
	}
	return 0
}

// InRing reports whether peer id is in the ring.
func (t *Table) InRing(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	return ok && p.inRing()
}

// Answers reports whether peer id may answer a request: known, and not
// dead or gone.
func (t *Table) Answers(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	return ok && p.state.Answers()
}

// Pingable returns the peers one may ping, sorted by ID: every listed one,
// those that left included (a node that left may come back under a new
// incarnation; a leaving node's own pongs say it is draining, so they do
// not revive it).
func (t *Table) Pingable() []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Peer, 0, len(t.peers))
	for _, p := range t.peers {
		if !p.undiscovered {
			out = append(out, p.Peer)
		}
	}
	sortPeers(out)
	return out
}

// ProbeTargets returns the peers to probe in one round: the neighbours of
// this node in ID order among the pingable peers (that many on each side),
// random extra ones drawn with r, every peer whose last probe failed (until
// it answers or is dead), and every peer never heard from: a node's probes
// do not grow with the cluster while every peer is probed by its neighbours
// every round. A dead peer is probed by its neighbours and at random only,
// so that a node found dead by mistake is not pinged by every node at once.
func (t *Table) ProbeTargets(neighbours, extra int, r *rand.Rand) []Peer {
	all := t.Pingable()
	if len(all) <= 2*neighbours+extra {
		return all
	}
	t.mu.Lock()
	unknown := map[string]bool{}
	for id, p := range t.peers {
		if (p.state == Unknown || p.state == Suspect || !p.failing.IsZero() && p.state != Dead) && !p.undiscovered {
			unknown[id] = true
		}
	}
	t.mu.Unlock()
	i, _ := slices.BinarySearchFunc(all, t.self, func(p Peer, id string) int { return strings.Compare(p.ID, id) })
	picked := map[int]bool{}
	for k := range neighbours {
		picked[(i+k)%len(all)] = true                       // successors
		picked[((i-1-k)%len(all)+len(all))%len(all)] = true // predecessors
	}
	for tries := 0; len(picked) < 2*neighbours+extra && tries < 8*extra; tries++ {
		picked[r.IntN(len(all))] = true
	}
	out := make([]Peer, 0, len(picked))
	for k := range all {
		if picked[k] || unknown[all[k].ID] {
			out = append(out, all[k])
		}
	}
	return out
}

// Helpers returns up to k peers in the ring other than skip, drawn with
// r: those an indirect probe of skip goes through.
func (t *Table) Helpers(skip string, k int, r *rand.Rand) []Peer {
	t.mu.Lock()
	var out []Peer
	for id, p := range t.peers {
		if id != skip && p.inRing() && p.state == Alive {
			out = append(out, p.Peer)
		}
	}
	t.mu.Unlock()
	sortPeers(out)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(k, len(out))]
}

// Revive records authenticated, fresh traffic other than a ping from peer
// id (a fetch, a batch): a peer believed dead that sends it is alive after
// all, unless the cluster declared its run dead.
func (t *Table) Revive(id string) Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok || p.undiscovered || p.state != Dead {
		return Change{} // a node that left may still finish sending: only pings bring it back
	}
	c := Change{From: p.state, To: Alive}
	p.state, p.lastOK, p.failing = Alive, t.now(), time.Time{}
	return c
}

// Reachable returns the peers that may answer, except those in skip,
// sorted by ID.
func (t *Table) Reachable(skip map[string]bool) []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Peer
	for id, p := range t.peers {
		if !skip[id] && p.state.Answers() {
			out = append(out, p.Peer)
		}
	}
	sortPeers(out)
	return out
}

// RingPeers returns the peers in the ring, sorted by ID.
func (t *Table) RingPeers() []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Peer
	for _, p := range t.peers {
		if p.inRing() {
			out = append(out, p.Peer)
		}
	}
	sortPeers(out)
	return out
}

// Ring returns the IDs in the ring, this node's included, sorted.
func (t *Table) Ring() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := []string{t.self}
	for id, p := range t.peers {
		if p.inRing() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// BuddyOf returns the buddy of node id in the current ring: its successor
// in ID order among the nodes in the ring, preferring one in another zone.
// When id is not in the ring (dead), it is placed where it would be.
func (t *Table) BuddyOf(id string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := []string{t.self}
	zone := map[string]string{t.self: t.zone}
	for pid, p := range t.peers {
		zone[pid] = p.Zone
		if p.inRing() {
			ids = append(ids, pid)
		}
	}
	slices.Sort(ids)
	return Successor(ids, id, func(x string) string { return zone[x] })
}

// Successor returns the node after id in the sorted ring ids (id itself
// excluded, in the ring or not), preferring the first one in another zone
// than id's; "" when no other node is in the ring.
func Successor(ids []string, id string, zone func(string) string) string {
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

// Statuses returns every peer's status, sorted by ID.
func (t *Table) Statuses() []Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Status, 0, len(t.peers))
	for _, p := range t.peers {
		out = append(out, Status{Peer: p.Peer, State: p.state, LastOK: p.lastOK, Mismatch: p.mismatch})
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func sortPeers(ps []Peer) {
	slices.SortFunc(ps, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
}
