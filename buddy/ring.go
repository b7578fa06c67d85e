package buddy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tandemsession/tandem/buddy/internal/ring"
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

// view is the membership table (ring.Table) in buddy's types.
type view struct {
	t *ring.Table
	// rmu guards r, the source of the random probe targets and helpers.
	rmu sync.Mutex
	r   *rand.Rand
}

func newView(self, zone string, peers []Peer, now func() time.Time) *view {
	rp := make([]ring.Peer, len(peers))
	for i, p := range peers {
		rp[i] = ring.Peer(p)
	}
	seed := uint64(now().UnixNano())
	return &view{t: ring.New(self, zone, rp, now), r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// change says what a view update changed.
type change = ring.Change

func (v *view) heard(id string, inc uint64, draining bool, mismatch string) (change, bool) {
	return v.t.Heard(id, inc, draining, mismatch)
}

func (v *view) silent(id string, suspectAfter, deadAfter time.Duration) change {
	return v.t.Silent(id, suspectAfter, deadAfter)
}

func (v *view) mark(id string, st State, inc uint64) change { return v.t.Mark(id, ring.State(st), inc) }

func (v *view) rumour(id string, inc uint64, fresh time.Duration) (change, bool) {
	return v.t.Rumour(id, inc, fresh)
}

func (v *view) quiet(id string) time.Duration { return v.t.Quiet(id) }

func (v *view) vouched(id string, inc uint64, draining bool) (change, bool) {
	return v.t.Vouched(id, inc, draining)
}

func (v *view) observe(id string, st State, inc uint64) change {
	return v.t.Observe(id, ring.State(st), inc)
}

func (v *view) setPeers(peers []Peer, maxIDLen int) (added, moved []string, changed bool) {
	rp := make([]ring.Peer, len(peers))
	for i, p := range peers {
		rp[i] = ring.Peer(p)
	}
	return v.t.SetPeers(rp, maxIDLen)
}

func (v *view) peer(id string) (Peer, bool) {
	p, ok := v.t.Peer(id)
	return Peer(p), ok
}

func (v *view) configured() bool             { return v.t.Configured() }
func (v *view) empty() bool                  { return v.t.Empty() }
func (v *view) incarnation(id string) uint64 { return v.t.Incarnation(id) }
func (v *view) inRing(id string) bool        { return v.t.InRing(id) }
func (v *view) answers(id string) bool       { return v.t.Answers(id) }
func (v *view) pingable() []Peer             { return peers(v.t.Pingable()) }
func (v *view) revive(id string) change      { return v.t.Revive(id) }
func (v *view) reachable(skip map[string]bool) []Peer {
	return peers(v.t.Reachable(skip))
}
func (v *view) ringPeers() []Peer        { return peers(v.t.RingPeers()) }
func (v *view) buddyOf(id string) string { return v.t.BuddyOf(id) }

// probeTargets returns the peers one probe round pings.
func (v *view) probeTargets(neighbours, extra int) []Peer {
	v.rmu.Lock()
	defer v.rmu.Unlock()
	return peers(v.t.ProbeTargets(neighbours, extra, v.r))
}

// helpers returns up to k peers an indirect probe of id goes through.
func (v *view) helpers(id string, k int) []Peer {
	v.rmu.Lock()
	defer v.rmu.Unlock()
	return peers(v.t.Helpers(id, k, v.r))
}

func (v *view) statuses() []PeerStatus {
	st := v.t.Statuses()
	out := make([]PeerStatus, len(st))
	for i, s := range st {
		out[i] = PeerStatus{Peer: Peer(s.Peer), State: State(s.State), LastOK: s.LastOK, Mismatch: s.Mismatch}
	}
	return out
}

func peers(rp []ring.Peer) []Peer {
	out := make([]Peer, len(rp))
	for i, p := range rp {
		out[i] = Peer(p)
	}
	return out
}
