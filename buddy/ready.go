package buddy

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
	n.closedMu.Lock()
	closed := n.closed
	n.closedMu.Unlock()
	if closed {
		return false
	}
	if (n.cfg.Discovery != nil || n.cfg.Membership != nil) && !n.discovered.Load() {
		return false // the peers are not known yet
	}
	return n.sender.buddy().ID != "" || !n.view.configured()
}
