package buddy

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// releaseOld waits until the new buddy holds every session (state transfer
// goes through the resync set, so live changes keep priority), then tells
// the previous buddy, if it is still alive, to drop its copies.
func (n *Node) releaseOld(old Peer, gen uint64) {
	n.spawn(func() {
		if err := n.sender.flush(n.ctx); err != nil {
			return // the buddy changed or failed again; the next transfer takes over
		}
		s := n.sender
		s.mu.Lock()
		current := s.generation == gen
		s.mu.Unlock()
		if !current || old.ID == "" || !n.reachable(old.ID) || old.ID == s.buddy().ID {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
		defer cancel()
		if _, _, err := n.call(ctx, old, pathTransfer, MsgTransfer, []byte{opDrop}); err != nil {
			n.log.Debug("buddy: old buddy not told to drop its copies", "peer", old.ID, "err", err)
		}
	})
}

// resyncAll queues a full copy of every session this node owns.
func (n *Node) resyncAll(m interface{ IDs(func(string) bool) }) {
	s := n.sender
	s.mu.Lock()
	m.IDs(func(id string) bool {
		s.resync[id] = struct{}{}
		return true
	})
	s.mu.Unlock()
	s.signal()
}

// Shutdown drains the node gracefully: it stops creating sessions, makes
// sure its buddy holds every session it owns, hands them over to the buddy
// as their new owner, tells the peers it is leaving, and stops. Call it
// after the application's http.Server.Shutdown, so no request is still
// running here. A rolling restart that drains each node in turn logs nobody
// out. When ctx ends first, the node stops anyway and returns ctx's error:
// sessions whose copy reached the buddy survive; their owner is gone.
func (n *Node) Shutdown(ctx context.Context) error {
	if n.draining.Swap(true) {
		return errors.New("buddy: Shutdown called twice")
	}
	n.stats.drains.Add(1)
	defer n.Close()
	m := n.mgr.Load()
	if m != nil {
		m.Drain()
	}
	to := n.sender.buddy()
	if to.ID == "" {
		n.log.Warn("buddy: draining alone: this node's sessions end with it")
		n.announceLeave(ctx)
		return nil
	}
	// Every session, in full: whatever a degraded or async commit did not
	// deliver is on the buddy after this.
	if m != nil {
		n.resyncAll(m)
	}
	if err := n.sender.flush(ctx); err != nil {
		n.announceLeave(ctx)
		return fmt.Errorf("buddy: drain: sessions not all on %s: %w", to.ID, err)
	}
	if _, _, err := n.call(ctx, to, pathTransfer, MsgTransfer, []byte{opPromote}); err != nil {
		n.announceLeave(ctx)
		return fmt.Errorf("buddy: drain: %s did not take the sessions over: %w", to.ID, err)
	}
	n.announceLeave(ctx)
	n.log.Info("buddy: drained", "to", to.ID)
	return nil
}

// announceLeave tells every reachable peer that this node is gone.
func (n *Node) announceLeave(ctx context.Context) {
	n.view.mu.Lock()
	var peers []Peer
	for _, p := range n.view.peers {
		if p.state.inRing() {
			peers = append(peers, p.Peer)
		}
	}
	n.view.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			if _, _, err := n.call(ctx, p, pathLeave, MsgLeave, nil); err != nil {
				n.log.Debug("buddy: leave not delivered", "peer", p.ID, "err", err)
			}
		})
	}
	wg.Wait()
}

// onLeave records a peer's graceful departure.
func (n *Node) onLeave(from string, _ []byte) ([]byte, error) {
	n.markLeft(from)
	return nil, nil
}
