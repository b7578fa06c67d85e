package buddy

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// pathUsers is the endpoint of a user's sessions (PROTOCOL.md section 4b):
// list them, or end them.
const pathUsers = "/tandem/v1/users"

var _ core.UserDirectory = (*Node)(nil)

// errNoManager: the node serves no manager yet.
var errNoManager = errors.New("buddy: no manager bound")

// UserSessions lists user's sessions on every node: this node's, and
// those of every peer that may answer, asked at once within ctx and
// ReplicationTimeout. A node that is gone is answered for by the nodes
// holding its backup copies (SessionInfo.Backup). When a peer that may
// answer does not, the error is a *core.IncompleteError naming it.
// core.Manager.UserSessions calls it; applications call that.
func (n *Node) UserSessions(ctx context.Context, user string) ([]core.SessionInfo, error) {
	m := n.mgr.Load()
	if m == nil {
		return nil, errNoManager
	}
	all := n.localUsers(m, wire.Users{Op: wire.UsersList, User: user})
	replies, err := n.askUsers(ctx, wire.Users{Op: wire.UsersList, User: user})
	for _, r := range replies {
		all = append(all, r.Sessions...)
	}
	return mergeSessions(all), err
}

// mergeSessions keeps one entry per session: the owner's rather than a
// backup copy's.
func mergeSessions(all []core.SessionInfo) []core.SessionInfo {
	idx := make(map[string]int, len(all))
	out := all[:0:0]
	for _, s := range all {
		i, ok := idx[s.ID]
		switch {
		case !ok:
			idx[s.ID] = len(out)
			out = append(out, s)
		case out[i].Backup && !s.Backup, out[i].Backup == s.Backup && out[i].Accessed.Before(s.Accessed):
			out[i] = s
		}
	}
	return out
}

// EndUserSessions ends user's sessions on every node (those of ids, or
// all when ids is nil), and the backup copies of them whose owner is
// gone, reporting reason to the managers' Events.OnInvalidated. It returns
// how many it ended; when a peer that may answer does not, the error is a
// *core.IncompleteError naming it. core.Manager.InvalidateUser calls it.
func (n *Node) EndUserSessions(ctx context.Context, user string, ids []string, reason core.Reason) (int, error) {
	m := n.mgr.Load()
	if m == nil {
		return 0, errNoManager
	}
	reqs := []wire.Users{{Op: wire.UsersEnd, User: user, All: true, Reason: string(reason)}}
	if ids != nil {
		reqs = reqs[:0]
		for chunk := range slices.Chunk(ids, wire.MaxUsersIDs) {
			reqs = append(reqs, wire.Users{Op: wire.UsersEnd, User: user, IDs: chunk, Reason: string(reason)})
		}
	}
	total := 0
	var errs []error
	for _, u := range reqs {
		total += n.endLocalUsers(ctx, m, u)
		replies, err := n.askUsers(ctx, u)
		for _, r := range replies {
			total += int(r.Ended)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return total, mergeIncomplete(errs)
	}
	return total, nil
}

// mergeIncomplete joins the errors of several fan-outs into one.
func mergeIncomplete(errs []error) error {
	var names []string
	for _, err := range errs {
		var inc *core.IncompleteError
		if !errors.As(err, &inc) {
			return err
		}
		names = append(names, inc.Unanswered...)
	}
	slices.Sort(names)
	return &core.IncompleteError{Unanswered: slices.Compact(names)}
}

// askUsers sends u to every peer that may answer, at once, and returns
// the replies of those that answered in time.
func (n *Node) askUsers(ctx context.Context, u wire.Users) ([]wire.UsersReply, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicationTimeout)
	defer cancel()
	peers := n.view.reachable(map[string]bool{n.cfg.ID: true})
	payload := wire.AppendUsers(nil, u)
	replies := make([]wire.UsersReply, len(peers))
	failed := make([]bool, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			out, _, err := n.call(ctx, p, pathUsers, wire.MsgUsers, payload)
			if err == nil {
				replies[i], err = wire.DecodeUsersReply(out)
			}
			if err != nil {
				n.log.Debug("buddy: users request not answered", "peer", p.ID, "err", err)
				failed[i] = true
			}
		})
	}
	wg.Wait()
	var missing []string
	out := replies[:0]
	for i, r := range replies {
		if failed[i] {
			missing = append(missing, peers[i].ID)
			continue
		}
		out = append(out, r)
	}
	if len(missing) > 0 {
		return out, &core.IncompleteError{Unanswered: missing}
	}
	return out, nil
}

// onUsers answers a peer's MsgUsers.
func (n *Node) onUsers(_ string, payload []byte) ([]byte, error) {
	u, err := wire.DecodeUsers(payload)
	if err != nil {
		return nil, malformed(err)
	}
	m := n.mgr.Load()
	if m == nil {
		return wire.AppendUsersReply(nil, wire.UsersReply{}), nil
	}
	var rep wire.UsersReply
	switch u.Op {
	case wire.UsersList:
		rep.Sessions = n.localUsers(m, u)
	case wire.UsersEnd:
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
		defer cancel()
		rep.Ended = uint64(n.endLocalUsers(ctx, m, u))
	}
	return wire.AppendUsersReply(nil, rep), nil
}

// localUsers lists user's sessions this node owns, and the backup copies
// it holds of them whose owner is gone.
func (n *Node) localUsers(m *core.Manager, u wire.Users) []core.SessionInfo {
	out := m.LocalUserSessions(u.User)
	for _, o := range n.orphans(u.User, nil) {
		out = append(out, core.SessionInfo{ID: o.id, Node: o.bk.owner(), Created: unixTime(o.bk.created), Accessed: unixTime(o.bk.accessed), Backup: true})
	}
	return out
}

// endLocalUsers ends user's sessions this node owns (those of u.IDs, or
// all), and replaces the backup copies of them whose owner is gone by
// ended fences, so that no node takes them over. It returns how many.
func (n *Node) endLocalUsers(ctx context.Context, m *core.Manager, u wire.Users) int {
	var ids []string
	if !u.All {
		ids = u.IDs
		if ids == nil {
			ids = []string{}
		}
	}
	k := m.EndLocalUserSessions(ctx, u.User, ids, core.Reason(u.Reason))
	for _, o := range n.orphans(u.User, ids) {
		unlock := n.handoff.lock(o.id)
		ended := n.backups.endCopy(o.id, o.bk)
		unlock()
		if ended {
			k++
			m.BackupEnded(ctx, o.id, unixTime(o.bk.created), o.bk.change(o.id).Set, core.Reason(u.Reason))
		}
	}
	return k
}

// orphans returns the backup copies of user's sessions whose owner does
// not answer (among ids, unless nil). The copies are read only when some
// peer does not answer: while every owner lives, they answer for their
// sessions themselves.
func (n *Node) orphans(user string, ids []string) []expiredCopy {
	gone := map[string]bool{}
	for _, st := range n.view.statuses() {
		if !n.view.answers(st.ID) {
			gone[st.ID] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	var want map[string]bool
	if ids != nil {
		want = make(map[string]bool, len(ids))
		for _, id := range ids {
			want[id] = true
		}
	}
	return n.backups.ofUser(user, func(id, owner string) bool { return gone[owner] && (want == nil || want[id]) })
}

// ofUser returns the copies (not fences) bound to user for which keep
// says yes.
func (b *backups) ofUser(user string, keep func(id, owner string) bool) []expiredCopy {
	var out []expiredCopy
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for id, bk := range sh.m {
			if !bk.fence() && string(bk.attrs.get(core.UserKey)) == user && keep(id, bk.owner()) {
				out = append(out, expiredCopy{id, bk})
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// endCopy replaces the copy bk of id by an ended fence, if it is still
// the one held.
func (b *backups) endCopy(id string, bk *backup) bool {
	sh := b.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[id] != bk {
		return false
	}
	b.set(sh, id, bk.endedFence(bk.epoch))
	return true
}
