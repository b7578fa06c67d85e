package buddy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tandemsession/tandem/buddy/wire"
)

// releaseLoop releases former buddies: once the current buddy holds every
// session (state transfer goes through the resync set, so live changes
// keep priority), it tells each former buddy that still answers to drop
// the copies it holds from this node. reconfigure signals it after every
// buddy change.
func (n *Node) releaseLoop() {
	for {
		select {
		case <-n.stop:
			return
		case <-n.release:
		}
		if err := n.sender.flush(n.ctx); err != nil {
			continue // the buddy changed or failed again: signaled anew
		}
		gen, peers := n.sender.retiredPeers()
		drop := wire.AppendTransfer(nil, wire.Transfer{Op: wire.TransferDrop, Incarnation: n.incarnation})
		for _, p := range peers {
			if !n.view.answers(p.ID) {
				continue // dead: it holds nothing; asked again if it comes back
			}
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
			_, _, err := n.call(ctx, p, pathTransfer, wire.MsgTransfer, drop)
			cancel()
			if err != nil {
				n.log.Debug("buddy: former buddy not told to drop its copies", "peer", p.ID, "err", err)
				continue
			}
			if n.sender.current(gen) {
				n.sender.released(p.ID)
			}
		}
	}
}

// releaseOld has releaseLoop release the former buddies.
func (n *Node) releaseOld() {
	select {
	case n.release <- struct{}{}:
	default:
	}
}

// resyncAll queues a full copy of every session this node owns.
func (n *Node) resyncAll() { n.sender.addResync(n.sessionIDs()) }

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
// out. Meanwhile peers see the node draining: they no longer pick it as a
// buddy, and a request for one of its sessions that reaches another node
// gets the session from it, or from the buddy once the handover began. If
// the buddy fails meanwhile, the next live node takes its place. When ctx
// ends first, the node stops anyway and returns ctx's error: sessions whose
// copy reached the buddy survive; their owner is gone.
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
	// Peers learn of the drain from the next pings.
	n.probeAll()
	for {
		to := n.sender.buddy()
		if to.ID == "" {
			n.log.Warn("buddy: draining alone: this node's sessions end with it")
			return nil
		}
		err := n.handOverAll(ctx, to)
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

// handOverAll makes sure to holds every session, then has it take them
// over.
func (n *Node) handOverAll(ctx context.Context, to Peer) error {
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
	promote := wire.AppendTransfer(nil, wire.Transfer{Op: wire.TransferPromote, Incarnation: n.incarnation})
	if _, _, err := n.call(pctx, to, pathTransfer, wire.MsgTransfer, promote); err != nil {
		n.handingOver.Store(false)
		return fmt.Errorf("%s did not take the sessions over: %w", to.ID, err)
	}
	// to owns them now, under newer epochs: the records here are stale, and
	// a node asking for one is sent there.
	n.drainedTo.Store(&to.ID)
	if m := n.mgr.Load(); m != nil {
		for _, id := range n.sessionIDs() {
			m.Moved(id)
		}
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

// announceLeave tells every peer in the ring that this node is gone. The
// node stops pinging first, so that no ping of it follows its leave.
func (n *Node) announceLeave(ctx context.Context) {
	close(n.probesOff)
	leave := wire.AppendLeave(nil, wire.Leave{Incarnation: n.incarnation})
	var wg sync.WaitGroup
	for _, p := range n.view.ringPeers() {
		wg.Go(func() {
			if _, _, err := n.call(ctx, p, pathLeave, wire.MsgLeave, leave); err != nil {
				n.log.Debug("buddy: leave not delivered", "peer", p.ID, "err", err)
			}
		})
	}
	wg.Wait()
	if m := n.cfg.Membership; m != nil {
		if err := m.Leave(ctx); err != nil {
			n.log.Warn("buddy: membership leave failed", "err", err)
		}
	}
}

// onLeave records a peer's graceful departure. A leave that names another
// incarnation of the sender than the one this node knows is stale.
func (n *Node) onLeave(from string, payload []byte) ([]byte, error) {
	l, err := wire.DecodeLeave(payload)
	if err != nil {
		return nil, malformed(err)
	}
	if inc := n.view.incarnation(from); l.Incarnation < inc {
		return nil, &rejection{409, RejectStale, fmt.Errorf("leave from %s's incarnation %d; it runs as %d", from, l.Incarnation, inc)}
	}
	n.markLeft(from, l.Incarnation)
	return nil, nil
}
