package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

// checkConfig configures the checker.
type checkConfig struct {
	// sync: the cluster ran in Sync mode, so a degraded commit (served
	// with one copy) is a violation.
	sync bool
	// maxStall, when above 0, makes a slower request a violation.
	maxStall time.Duration
	// timeout bounds porcupine on one register.
	timeout time.Duration
}

// Result is what the checker found in one run's history.
type Result struct {
	Acked         int // acknowledged writes (set, login, logout)
	LostWrites    int // acknowledged writes a later read should have seen, that no later read saw
	LostSessions  int // sessions replaced by a fresh one while they existed (pair kills excepted)
	LegitLost     int // sessions lost with both copies in a pair kill: allowed
	StaleReads    int // reads that missed an acknowledged write seen again later
	Forks         int // lineages with acknowledged writes on two owners that diverged
	UndoneLogouts int // logged-out sessions whose old cookie got data back
	Degraded      uint64
	DegradedAlone uint64         // degraded commits of a node that could reach no other node, where the scenario allows them
	Errors        map[string]int // non-200 answers by status, transport errors by class
	Recovery      []time.Duration
	LongestStall  time.Duration
	StallOp       *Op
	StallHit      bool // longer than maxStall
	Unchecked     int  // registers porcupine could not decide in time
	IDChanges     int  // answers naming another session without a login: reported, not judged
	Findings      []Finding
	Bad           []badRegister
}

// Finding is one violation (or a noteworthy fact), with the ops involved.
type Finding struct {
	Kind string // lost_write, lost_session, legit_lost, stale_read, fork, undone_logout, degraded, stall, order
	Text string
	Ops  []*Op
}

// badRegister is a register porcupine found not linearizable, kept for its
// visualization.
type badRegister struct {
	lineage *lineage
	key     string
	ops     []porcupine.Operation
	info    porcupine.LinearizationInfo
}

// violations counts what makes a run fail.
func (r *Result) violations(sync bool) int {
	v := r.LostWrites + r.LostSessions + r.StaleReads + r.Forks + r.UndoneLogouts
	if sync && r.Degraded > 0 {
		v++
	}
	if r.StallHit {
		v++
	}
	return v
}

func (r *Result) add(kind, format string, ops []*Op, args ...any) {
	r.Findings = append(r.Findings, Finding{Kind: kind, Text: fmt.Sprintf(format, args...), Ops: ops})
}

// check runs every rule over a history.
func check(h History, cfg checkConfig) *Result {
	if cfg.timeout <= 0 {
		cfg.timeout = 10 * time.Second
	}
	r := &Result{Errors: map[string]int{}}
	ls := buildLineages(h.Ops)
	countOps(h, r, cfg)
	checkSessions(h, ls, r)
	var horizon int64
	for i := range h.Ops {
		horizon = max(horizon, h.Ops[i].Return)
	}
	for _, l := range ls.all {
		checkRegisters(l, horizon+1, cfg.timeout, r)
		checkFork(l, r)
	}
	checkLogouts(h, ls, r)
	checkDegraded(h, r)
	r.Recovery = recoveries(h)
	return r
}

// countOps counts acknowledged writes, errors and the longest request.
func countOps(h History, r *Result, cfg checkConfig) {
	for i := range h.Ops {
		o := &h.Ops[i]
		if o.Outcome == outcomeOK && (o.write() || o.Kind == kindLogout) {
			r.Acked++
		}
		switch {
		case o.Status != 0 && o.Status != 200:
			r.Errors[strconv.Itoa(o.Status)]++
		case o.Err != "":
			r.Errors[o.Err]++
		}
		if d := o.latency(); d > r.LongestStall {
			r.LongestStall, r.StallOp = d, o
		}
	}
	if cfg.maxStall > 0 && r.LongestStall > cfg.maxStall {
		r.StallHit = true
		r.add("stall", "the slowest request took %v, more than -max-stall %v", []*Op{r.StallOp}, r.LongestStall.Round(time.Millisecond), cfg.maxStall)
	}
}

// checkSessions judges every fresh session that replaced an existing one
// (rule a): legitimate only when both its copies died together, that is
// when the owner and backup last reported to the user before a pair kill
// are exactly the two nodes killed.
func checkSessions(h History, ls *lineages, r *Result) {
	r.IDChanges = len(ls.idChanges)
	for _, o := range ls.idChanges {
		r.add("id_change", "user %d sent session %s and the answer names %s without a login", []*Op{o}, o.User, short(o.SentID), short(o.SessionID))
	}
	for _, f := range ls.fresh {
		old := f.old
		if old.lost || old.legit {
			continue // one loss per session
		}
		if e, rt, ok := pairKillBefore(h.Events, old, f.op.Return); ok {
			old.legit = true
			r.LegitLost++
			r.add("legit_lost", "user %d: session %s (owner %s, backup %s) lost with both copies in the kill of %v at %s",
				[]*Op{f.op}, f.op.User, short(old.ids[len(old.ids)-1]), rt.owner, rt.backup, e.Nodes, ms(e.At))
			continue
		}
		old.lost = true
		r.LostSessions++
		rt, _ := old.routeBefore(f.op.Invoke)
		r.add("lost_session", "user %d: %s on %s got a fresh session (%s) although session %s existed (last told owner %s, backup %s)",
			[]*Op{f.op}, f.op.User, f.op.Kind, f.op.Node, short(f.op.SessionID), short(f.op.SentID), rt.owner, rt.backup)
	}
}

// pairKillBefore finds a kill of two or more nodes at once, before t, that
// took both the owner and the backup the user was last told of.
func pairKillBefore(events []Event, l *lineage, t int64) (Event, route, bool) {
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		if e.Kind != evKill || len(e.Nodes) < 2 || e.At >= t {
			continue
		}
		rt, ok := l.routeBefore(e.At)
		if ok && rt.owner != rt.backup && slices.Contains(e.Nodes, rt.owner) && slices.Contains(e.Nodes, rt.backup) && len(e.Nodes) == 2 {
			return e, rt, true
		}
	}
	return Event{}, route{}, false
}

// regInput is a register operation's input: a write of Value, or a read.
type regInput struct {
	Write bool
	Value string
}

// registerModel is a register holding a string, "" for absent.
func registerModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return "" },
		Step: func(state, input, output any) (bool, any) {
			in := input.(regInput)
			if in.Write {
				return true, in.Value
			}
			return output.(string) == state.(string), state
		},
		DescribeOperation: func(input, output any) string {
			in := input.(regInput)
			if in.Write {
				return fmt.Sprintf("set %q", in.Value)
			}
			return fmt.Sprintf("get -> %q", output)
		},
		DescribeState:             func(state any) string { return fmt.Sprintf("%q", state) },
		DescribeOperationMetadata: func(info any) string { return info.(string) },
	}
}

// regOp is one op of one register.
type regOp struct {
	op        *Op
	write     bool
	value     string
	call, ret int64
	acked     bool
}

// registers splits a lineage into one history per key: writes of the key
// and reads (every read reads every key; an absent key reads "").
func registers(l *lineage, horizon int64) map[string][]regOp {
	keys := map[string]bool{}
	for _, o := range l.ops {
		if o.write() {
			keys[o.Key] = true
		}
		if o.Kind == kindGet && o.Outcome == outcomeOK {
			for k := range o.Values {
				keys[k] = true
			}
		}
	}
	out := map[string][]regOp{}
	for k := range keys {
		var ops []regOp
		for _, o := range l.ops {
			switch {
			case o.write() && o.Key == k:
				ro := regOp{op: o, write: true, value: o.Value, call: o.Invoke, ret: o.Return, acked: o.Outcome == outcomeOK}
				if !ro.acked {
					ro.ret = horizon // may take effect at any time after it was sent
				}
				ops = append(ops, ro)
			case o.Kind == kindGet && o.Outcome == outcomeOK:
				ops = append(ops, regOp{op: o, value: o.Values[k], call: o.Invoke, ret: o.Return, acked: true})
			}
		}
		out[k] = ops
	}
	return out
}

func toPorcupine(ops []regOp) []porcupine.Operation {
	out := make([]porcupine.Operation, len(ops))
	for i, ro := range ops {
		o := ro.op
		meta := fmt.Sprintf("op %d user %d %s on %s (served by %s) status %d %s", o.ID, o.User, o.Kind, o.Node, o.ServedBy, o.Status, o.Outcome)
		var output any = ro.value
		if ro.write {
			output = ""
		}
		out[i] = porcupine.Operation{ClientId: o.Slot, Input: regInput{Write: ro.write, Value: ro.value}, Call: ro.call,
			Output: output, Return: ro.ret, Metadata: meta}
	}
	return out
}

// checkRegisters runs porcupine on each key of a lineage and classifies
// what it rejects.
func checkRegisters(l *lineage, horizon int64, timeout time.Duration, r *Result) {
	regs := registers(l, horizon)
	model := registerModel()
	for _, k := range slices.Sorted(maps.Keys(regs)) {
		ops := regs[k]
		hist := toPorcupine(ops)
		res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
		switch res {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			r.Unchecked++
			continue
		}
		r.Bad = append(r.Bad, badRegister{lineage: l, key: k, ops: hist, info: info})
		classify(l, k, ops, r)
	}
}

// classify names what made a register not linearizable. A read outside
// the values it may return missed the last write acknowledged before it:
// a stale read if that value is read again later, else a lost write. A
// register porcupine rejects without such a read (reads out of order) is
// counted as one stale read.
func classify(l *lineage, key string, ops []regOp, r *Result) {
	var writes, reads []regOp
	for _, ro := range ops {
		if ro.write {
			writes = append(writes, ro)
		} else {
			reads = append(reads, ro)
		}
	}
	found := false
	lost := map[int]bool{}
	for _, rd := range reads {
		allowed, last := allowedValues(writes, rd)
		if allowed[rd.value] {
			continue
		}
		found = true
		if last == nil {
			r.StaleReads++
			r.add("stale_read", "user %d lineage %d key %q: read %q, a value never written before it", []*Op{rd.op}, l.user, l.n, key, rd.value)
			continue
		}
		seenLater := false
		for _, later := range reads {
			if later.call > rd.ret && later.value == last.value {
				seenLater = true
				break
			}
		}
		if seenLater {
			r.StaleReads++
			r.add("stale_read", "user %d lineage %d key %q: read %q on %s at %s, missing %q acknowledged by %s at %s (read again later)",
				[]*Op{rd.op, last.op}, l.user, l.n, key, rd.value, rd.op.ServedBy, ms(rd.call), last.value, last.op.ServedBy, ms(last.ret))
			continue
		}
		if lost[last.op.ID] {
			continue
		}
		lost[last.op.ID] = true
		r.LostWrites++
		r.add("lost_write", "user %d lineage %d key %q: %q acknowledged by %s at %s is gone: %s on %s at %s read %q, and no later read saw it",
			[]*Op{last.op, rd.op}, l.user, l.n, key, last.value, last.op.ServedBy, ms(last.ret), readName(rd.op), rd.op.ServedBy, ms(rd.call), rd.value)
	}
	if !found {
		r.StaleReads++
		r.add("order", "user %d lineage %d key %q: porcupine finds no linearization (reads out of order)", nil, l.user, l.n, key)
	}
}

func readName(o *Op) string {
	if o.Final {
		return "the final read"
	}
	return "a read"
}

// allowedValues returns the values a read may return in a register whose
// writes (of one user, one at a time, but for indeterminate ones) are
// writes: the last write acknowledged before the read started, any write
// not known to be overwritten by then, and "" while no write was
// acknowledged before it. last is that last acknowledged write.
func allowedValues(writes []regOp, rd regOp) (map[string]bool, *regOp) {
	allowed := map[string]bool{}
	var last *regOp
	for i := range writes {
		w := &writes[i]
		if w.acked && w.ret < rd.call && (last == nil || w.ret > last.ret) {
			last = w
		}
	}
	if last == nil {
		allowed[""] = true
	}
	for i := range writes {
		w := &writes[i]
		if w.call > rd.ret {
			continue // sent after the read answered
		}
		overwritten := false
		for j := range writes {
			w2 := &writes[j]
			if w2.acked && w.ret < w2.call && w2.ret < rd.call {
				overwritten = true
				break
			}
		}
		if !overwritten {
			allowed[w.value] = true
		}
	}
	return allowed, last
}

// checkFork looks for acknowledged writes of one lineage committed on two
// owners whose histories diverge (rule b): the same session version
// acknowledged by two nodes, or a write that started after another was
// acknowledged and yet got a version no higher (it was applied to a copy
// that lacked the other).
func checkFork(l *lineage, r *Result) {
	var ws []*Op
	for _, o := range l.ops {
		if o.write() && o.Outcome == outcomeOK && o.Version > 0 {
			ws = append(ws, o)
		}
	}
	byVersion := map[uint64]*Op{}
	for _, o := range ws {
		if p, ok := byVersion[o.Version]; ok && p.ServedBy != o.ServedBy {
			r.Forks++
			r.add("fork", "user %d lineage %d: version %d acknowledged by %s (op %d, %s) and by %s (op %d, %s)",
				[]*Op{p, o}, l.user, l.n, o.Version, p.ServedBy, p.ID, ms(p.Return), o.ServedBy, o.ID, ms(o.Return))
			return
		}
		byVersion[o.Version] = o
	}
	for i, a := range ws {
		for _, b := range ws[i+1:] {
			if b.Invoke > a.Return && b.Version <= a.Version {
				r.Forks++
				r.add("fork", "user %d lineage %d: %s=%q got version %d on %s at %s, after %s=%q was acknowledged at version %d by %s at %s",
					[]*Op{a, b}, l.user, l.n, b.Key, b.Value, b.Version, b.ServedBy, ms(b.Return), a.Key, a.Value, a.Version, a.ServedBy, ms(a.Return))
				return
			}
		}
	}
}

// checkLogouts replays (rule c): after an acknowledged logout, the old
// cookie must get a fresh, empty session.
func checkLogouts(h History, ls *lineages, r *Result) {
	undone := map[string]bool{}
	for i := range h.Ops {
		o := &h.Ops[i]
		if o.Kind != kindReplay || o.Outcome != outcomeOK || undone[o.SentID] {
			continue
		}
		if !o.New || len(o.Values) > 0 {
			undone[o.SentID] = true
			r.UndoneLogouts++
			var ops []*Op
			if l := ls.byID[o.SentID]; l != nil && l.logout != nil {
				ops = append(ops, l.logout)
			}
			r.add("undone_logout", "user %d: session %s, logged out, answered again on %s at %s: new=%v values=%v",
				append(ops, o), o.User, short(o.SentID), o.ServedBy, ms(o.Invoke), o.New, o.Values)
		}
	}
}

// checkDegraded sums the degraded commits of every node process (rule d):
// each process's counter as last read before it died.
func checkDegraded(h History, r *Result) {
	type proc struct {
		node string
		inc  int
	}
	last, alone := map[proc]uint64{}, map[proc]uint64{}
	for _, s := range h.Stats {
		p := proc{s.Node, s.Incarnation}
		last[p] = max(last[p], s.Degraded)
		alone[p] = max(alone[p], s.DegradedAlone)
	}
	procs := slices.SortedFunc(maps.Keys(last), func(a, b proc) int {
		return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.inc, b.inc))
	})
	for _, p := range procs {
		d, a := last[p], min(alone[p], last[p])
		if h.Header.AloneOK && a > 0 {
			r.DegradedAlone += a
			d -= a
		}
		if d > 0 {
			r.Degraded += d
			r.add("degraded", "%s (start %d) acknowledged %d synchronous commits with one copy (Stats().Degraded) while another node answered", nil, p.node, p.inc+1, d)
		}
	}
}

// recoveries measures, for every disruptive fault, how long each affected
// user (one whose owner or backup, as last reported, was hit) waited for
// its next acknowledged op.
func recoveries(h History) []time.Duration {
	byUser := map[int][]*Op{}
	for i := range h.Ops {
		o := &h.Ops[i]
		if o.Kind != kindReplay {
			byUser[o.User] = append(byUser[o.User], o)
		}
	}
	var out []time.Duration
	for _, e := range h.Events {
		if !e.disruptive() {
			continue
		}
		for _, ops := range byUser {
			var last *Op
			for _, o := range ops {
				if o.Outcome == outcomeOK && o.Return < e.At && (last == nil || o.Return > last.Return) && o.Owner != "" {
					last = o
				}
			}
			if last == nil || !(slices.Contains(e.Nodes, last.Owner) || slices.Contains(e.Nodes, last.Backup)) {
				continue
			}
			var first *Op
			for _, o := range ops {
				if o.Outcome == outcomeOK && o.Invoke >= e.At && (first == nil || o.Return < first.Return) {
					first = o
				}
			}
			if first != nil {
				out = append(out, time.Duration(first.Return-e.At))
			}
		}
	}
	slices.Sort(out)
	return out
}

// ms formats a history time as milliseconds since the run started.
func ms(t int64) string { return fmt.Sprintf("%.1fms", float64(t)/1e6) }

// short abbreviates a session ID.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	if id == "" {
		return "(none)"
	}
	return id
}
