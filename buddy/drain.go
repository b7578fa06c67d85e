package buddy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tandemsession/tandem/buddy/wire"
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
		if _, _, err := n.call(ctx, old, pathTransfer, wire.MsgTransfer, []byte{opDrop}); err != nil {
			n.log.Debug("buddy: old buddy not told to drop its copies", "peer", old.ID, "err", err)
		}
	})
}

// resyncAll queues a full copy of every session this node owns.
func (n *Node) resyncAll() {
	n.sender.addResync(n.sessionIDs())
	n.sender.signal()
}

// sessionIDs lists the sessions this node owns.
func (n *Node) sessionIDs() []string {
	m := n.mgr.Load()
	if m == nil {
		return nil
	}
	var ids []string
	m.IDs(func(id string) bool {
		ids = append(ids, id)
		return true
	})
	return ids
}

// Shutdown drains the node gracefully: it stops creating sessions, makes
// sure its buddy holds every session it owns, hands them over to the buddy
// as their new owner, tells the peers it is leaving, and stops. Call it
// after the application's http.Server.Shutdown, so no request is still
// running here. A rolling restart that drains each node in turn logs nobody
// out. If the buddy fails meanwhile, the next live node takes its place.
// When ctx ends first, the node stops anyway and returns ctx's error:
// sessions whose copy reached the buddy survive; their owner is gone.
func (n *Node) Shutdown(ctx context.Context) error {
	if n.draining.Swap(true) {
		return errors.New("buddy: Shutdown called twice")
	}
	n.stats.drains.Add(1)
	defer n.Close()
	if m := n.mgr.Load(); m != nil {
		m.Drain()
	}
	defer n.announceLeave(ctx)
	for {
		to := n.sender.buddy()
		if to.ID == "" {
			n.log.Warn("buddy: draining alone: this node's sessions end with it")
			return nil
		}
		err := n.handOver(ctx, to)
		if err == nil {
			n.log.Info("buddy: drained", "to", to.ID)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("buddy: drain: %w", err)
		}
		n.log.Warn("buddy: drain: buddy failed, trying the next node", "buddy", to.ID, "err", err)
		n.markDown(to.ID)
	}
}

// handOver makes sure to holds every session, then has it take them over.
func (n *Node) handOver(ctx context.Context, to Peer) error {
	// Every session, in full: whatever a degraded or async commit did not
	// deliver is on the buddy after this.
	n.resyncAll()
	if err := n.flushTo(ctx, to); err != nil {
		return err
	}
	// From here, a node asking for a session is sent to the buddy; a
	// removal queued by a session given up just before is delivered.
	n.handingOver.Store(true)
	if err := n.flushTo(ctx, to); err != nil {
		n.handingOver.Store(false)
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 4*n.cfg.ReplicationTimeout)
	defer cancel()
	if _, _, err := n.call(pctx, to, pathTransfer, wire.MsgTransfer, []byte{opPromote}); err != nil {
		n.handingOver.Store(false)
		return fmt.Errorf("%s did not take the sessions over: %w", to.ID, err)
	}
	return nil
}

// flushTo flushes, failing when the buddy changes away from to or stops
// answering.
func (n *Node) flushTo(ctx context.Context, to Peer) error {
	fctx, cancel := context.WithTimeout(ctx, 4*n.cfg.ReplicationTimeout)
	defer cancel()
	err := n.sender.flush(fctx)
	if b := n.sender.buddy(); b.ID != to.ID {
		return fmt.Errorf("buddy changed from %s to %s", to.ID, b.ID)
	}
	if err != nil {
		return fmt.Errorf("sessions not all on %s: %w", to.ID, err)
	}
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
			if _, _, err := n.call(ctx, p, pathLeave, wire.MsgLeave, nil); err != nil {
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
