package chaos

import (
	"cmp"
	"slices"
)

// A lineage is one user's session as the user sees it: it starts with a
// fresh session (the first request, one after a logout, or one that found
// its session gone) and continues across Regenerate (login keeps the data
// under a new ID). Each key of a lineage is one register: its reads must be
// linearizable with its writes.
type lineage struct {
	n     int // index, for reports
	user  int
	ids   []string // session IDs, oldest first
	ops   []*Op    // ops applied to it: acknowledged and indeterminate
	first int64    // Return of its first acknowledged write; -1 while none
	// routes are the owner and backup the answers reported, in answer
	// order, to find what the user was last told before a fault.
	routes []route
	// lost is set when a request got a fresh session although this one
	// existed and both its copies were not lost together; legit when they
	// were (a pair kill).
	lost, legit bool
	logout      *Op // the acknowledged logout that ended it
}

type route struct {
	at            int64
	owner, backup string
}

// existedBefore reports whether a write of the lineage was acknowledged
// before t: from then on its session exists.
func (l *lineage) existedBefore(t int64) bool { return l.first >= 0 && l.first < t }

// routeBefore returns the last owner and backup reported before t.
func (l *lineage) routeBefore(t int64) (route, bool) {
	for i := len(l.routes) - 1; i >= 0; i-- {
		if l.routes[i].at < t {
			return l.routes[i], true
		}
	}
	return route{}, false
}

// lineages assigns every op of a history to a lineage.
type lineages struct {
	all  []*lineage
	byID map[string]*lineage
	// excuses holds, per session ID, when an indeterminate login or logout
	// was sent with it: the session may have ended then, so a fresh
	// session for that ID afterwards is not a loss.
	excuses map[string][]int64
	// idChanges are answers naming another session than the request's
	// cookie without a login or a fresh session: should never happen.
	idChanges []*Op
	// fresh are the answers that brought a fresh session for a session
	// that existed, with the lineage they replaced.
	fresh []freshSession
}

type freshSession struct {
	op  *Op
	old *lineage
}

func (ls *lineages) newLineage(user int, id string) *lineage {
	l := &lineage{n: len(ls.all) + 1, user: user, first: -1}
	ls.all = append(ls.all, l)
	if id != "" {
		l.ids = append(l.ids, id)
		ls.byID[id] = l
	}
	return l
}

func (ls *lineages) excused(id string, before int64) bool {
	for _, t := range ls.excuses[id] {
		if t < before {
			return true
		}
	}
	return false
}

// buildLineages walks the ops in the order their answers arrived (a
// session ID is known to a user only once an answer named it) and assigns
// each to its lineage. Ops that never reached a node and replays of
// logged-out cookies belong to none.
func buildLineages(ops []Op) *lineages {
	ls := &lineages{byID: map[string]*lineage{}, excuses: map[string][]int64{}}
	order := make([]*Op, 0, len(ops))
	for i := range ops {
		o := &ops[i]
		if o.Outcome == outcomeFail || o.Kind == kindReplay {
			continue
		}
		order = append(order, o)
	}
	slices.SortStableFunc(order, func(a, b *Op) int { return cmp.Or(cmp.Compare(a.Return, b.Return), cmp.Compare(a.ID, b.ID)) })
	for _, o := range order {
		sent := ls.byID[o.SentID] // nil for no cookie
		if o.Outcome == outcomeUnknown {
			if sent != nil {
				sent.ops = append(sent.ops, o)
				if o.Kind == kindLogin || o.Kind == kindLogout {
					ls.excuses[o.SentID] = append(ls.excuses[o.SentID], o.Invoke)
				}
			}
			continue
		}
		// Acknowledged.
		target := sent
		switch {
		case o.New:
			replaced := sent != nil && sent.existedBefore(o.Invoke) && !ls.excused(o.SentID, o.Return)
			if replaced {
				ls.fresh = append(ls.fresh, freshSession{op: o, old: sent})
			}
			if known := ls.byID[o.SessionID]; known != nil && o.SessionID == o.SentID && !replaced {
				// A new session's cookie (issued before it was stored)
				// kept its ID: the same lineage, which never existed.
				target = known
			} else {
				target = ls.newLineage(o.User, o.SessionID)
			}
		case o.Kind == kindLogin:
			if sent == nil {
				target = ls.newLineage(o.User, o.SessionID)
			} else if o.SessionID != "" {
				sent.ids = append(sent.ids, o.SessionID)
				ls.byID[o.SessionID] = sent
			}
		default:
			if o.SessionID != o.SentID && o.Kind != kindLogout {
				ls.idChanges = append(ls.idChanges, o)
			}
			if l := ls.byID[o.SessionID]; l != nil {
				target = l
			} else if target == nil {
				target = ls.newLineage(o.User, o.SessionID)
			}
		}
		if o.Kind == kindLogout {
			if !o.New && target != nil {
				target.ops = append(target.ops, o)
				target.logout = o
			}
			continue
		}
		if target == nil {
			continue
		}
		target.ops = append(target.ops, o)
		if o.write() && target.first < 0 {
			target.first = o.Return
		}
		if o.Owner != "" {
			target.routes = append(target.routes, route{at: o.Return, owner: o.Owner, backup: o.Backup})
		}
	}
	for _, l := range ls.all {
		slices.SortStableFunc(l.ops, func(a, b *Op) int { return cmp.Or(cmp.Compare(a.Invoke, b.Invoke), cmp.Compare(a.ID, b.ID)) })
	}
	return ls
}
