package buddy

import "fmt"

// Ready reports whether the node has joined the ring and its sessions have
// a backup: New ran its first round of pings (it does before it returns),
// and the node has chosen a buddy, or it runs alone because no peer is
// configured. It is false while the node drains (Shutdown) and once it is
// closed.
//
// Use it for a readiness endpoint that a deployment waits on before it
// stops the next node of a rolling restart. A node whose peers are all
// down is not ready, though it still serves: do not let a balancer take
// every node out of rotation on Ready alone.
func (n *Node) Ready() bool {
	if n.draining.Load() {
		return false
	}
	n.spawnMu.Lock()
	closed := n.closed
	n.spawnMu.Unlock()
	if closed {
		return false
	}
	if n.sender.buddy().ID != "" {
		return true
	}
	n.view.mu.Lock()
	defer n.view.mu.Unlock()
	for _, p := range n.view.peers {
		if !p.undiscovered {
			return false // a peer is configured: alone means not joined
		}
	}
	return true
}

// MarshalText implements encoding.TextMarshaler: the state's name, so that
// JSON shows "alive" rather than 1.
func (s State) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("buddy: unknown State %d", int(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: it reads a name
// MarshalText wrote.
func (s *State) UnmarshalText(b []byte) error {
	for i, name := range stateNames {
		if string(b) == name {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("buddy: unknown state %q", b)
}
