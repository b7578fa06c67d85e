package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hist builds a hand-made history: times are in milliseconds.
type hist struct {
	h    History
	next int
}

func newHist() *hist {
	return &hist{h: History{Header: Header{Scenario: "test", Mode: "sync", Nodes: []string{"n1", "n2", "n3"}}}}
}

// op appends an op; t0 and t1 are milliseconds.
func (b *hist) op(o Op, t0, t1 int64) *Op {
	b.next++
	o.ID = b.next
	o.Invoke, o.Return = t0*1e6, t1*1e6
	if o.Outcome == "" {
		o.Outcome = outcomeOK
	}
	if o.Outcome == outcomeOK {
		if o.Status == 0 {
			o.Status = 200
		}
		if o.ServedBy == "" {
			o.ServedBy = o.Node
		}
	}
	b.h.Ops = append(b.h.Ops, o)
	return &b.h.Ops[len(b.h.Ops)-1]
}

// set is an acknowledged write of k=v by user on session id, served by
// node (owner node, backup backup).
func (b *hist) set(user int, id, k, v, node, backup string, version uint64, t0, t1 int64) {
	b.op(Op{User: user, Kind: kindSet, Key: k, Value: v, Node: node, SentID: id, SessionID: id, Owner: node, Backup: backup, Version: version}, t0, t1)
}

// first is a user's first write: no cookie, a fresh session id.
func (b *hist) first(user int, id, k, v, node, backup string, t0, t1 int64) {
	b.op(Op{User: user, Kind: kindSet, Key: k, Value: v, Node: node, SessionID: id, New: true, Owner: node, Backup: backup, Version: 1}, t0, t1)
}

func (b *hist) get(user int, id, node string, vals map[string]string, t0, t1 int64) *Op {
	return b.op(Op{User: user, Kind: kindGet, Node: node, SentID: id, SessionID: id, Owner: node, Backup: "n2", Values: vals}, t0, t1)
}

func (b *hist) event(kind string, at int64, nodes ...string) {
	b.h.Events = append(b.h.Events, Event{At: at * 1e6, Kind: kind, Nodes: nodes})
}

func (b *hist) check(t *testing.T) *Result {
	t.Helper()
	return check(b.h, checkConfig{sync: b.h.Header.Mode == "sync", timeout: 5 * time.Second})
}

func findings(r *Result) string {
	var s []string
	for _, f := range r.Findings {
		s = append(s, f.Kind+": "+f.Text)
	}
	return strings.Join(s, "\n")
}

func TestCheckerAcceptsACleanHistory(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	b.set(1, "S1", "b", "2", "n1", "n2", 2, 20, 30)
	b.get(1, "S1", "n1", map[string]string{"a": "1", "b": "2"}, 40, 50)
	// An indeterminate write may or may not have happened: both reads are fine.
	b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "3", Node: "n1", SentID: "S1", Outcome: outcomeUnknown, Err: errTimeout}, 60, 65)
	b.get(1, "S1", "n1", map[string]string{"a": "1", "b": "2"}, 70, 80)
	b.get(1, "S1", "n1", map[string]string{"a": "3", "b": "2"}, 90, 100)
	// Concurrent writes of two keys, then a read that sees both.
	b.set(1, "S1", "a", "4", "n1", "n2", 4, 110, 130)
	b.set(1, "S1", "b", "5", "n1", "n2", 5, 112, 131)
	b.get(1, "S1", "n1", map[string]string{"a": "4", "b": "5"}, 140, 150)
	// A refused request did not happen.
	b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "6", Node: "n3", SentID: "S1", Outcome: outcomeFail, Err: errRefused}, 160, 161)
	b.get(1, "S1", "n1", map[string]string{"a": "4", "b": "5"}, 170, 180)
	r := b.check(t)
	if r.violations(true) != 0 {
		t.Fatalf("clean history rejected:\n%s", findings(r))
	}
	if r.Acked != 4 || r.Errors[errTimeout] != 1 || r.Errors[errRefused] != 1 {
		t.Fatalf("acked %d errors %v", r.Acked, r.Errors)
	}
}

func TestCheckerLostWrite(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	b.set(1, "S1", "a", "2", "n1", "n2", 2, 20, 30)
	b.set(1, "S1", "b", "x", "n2", "n3", 3, 31, 35)
	b.get(1, "S1", "n2", map[string]string{"a": "1", "b": "x"}, 40, 50)
	fin := b.get(1, "S1", "n2", map[string]string{"a": "1", "b": "x"}, 60, 70)
	fin.Final = true
	r := b.check(t)
	if r.LostWrites != 1 || r.StaleReads != 0 || len(r.Bad) != 1 || r.Bad[0].key != "a" {
		t.Fatalf("lost %d stale %d bad %d:\n%s", r.LostWrites, r.StaleReads, len(r.Bad), findings(r))
	}
	dir := t.TempDir()
	if err := writeReport(dir, b.h, r); err != nil {
		t.Fatal(err)
	}
	rep, err := os.ReadFile(filepath.Join(dir, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rep), `"2" acknowledged by n1`) {
		t.Fatalf("report does not name the lost write:\n%s", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "register-u1-l1-a.html")); err != nil {
		t.Fatalf("no visualization: %v", err)
	}
}

func TestCheckerStaleRead(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	b.set(1, "S1", "a", "2", "n1", "n2", 2, 20, 30)
	b.get(1, "S1", "n3", map[string]string{"a": "1"}, 40, 50)
	b.get(1, "S1", "n1", map[string]string{"a": "2"}, 60, 70)
	r := b.check(t)
	if r.StaleReads != 1 || r.LostWrites != 0 {
		t.Fatalf("stale %d lost %d:\n%s", r.StaleReads, r.LostWrites, findings(r))
	}
}

func TestCheckerLegitDoubleFailureLoss(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	b.get(1, "S1", "n1", map[string]string{"a": "1"}, 20, 30)
	b.event(evKill, 40, "n1", "n2")
	// The next request finds nobody holding the session: a fresh one.
	b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "2", Node: "n3", SentID: "S1", SessionID: "F1", New: true, Owner: "n3", Backup: "", Version: 1}, 50, 60)
	b.get(1, "F1", "n3", map[string]string{"a": "2"}, 70, 80)
	r := b.check(t)
	if r.violations(true) != 0 || r.LegitLost != 1 {
		t.Fatalf("legit %d, violations:\n%s", r.LegitLost, findings(r))
	}
}

func TestCheckerIllegitFreshSession(t *testing.T) {
	for _, tc := range []struct {
		name   string
		killed []string
	}{
		{"single kill", []string{"n1"}},
		{"pair kill of other nodes", []string{"n2", "n3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newHist()
			b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
			b.event(evKill, 40, tc.killed...)
			b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "2", Node: "n3", SentID: "S1", SessionID: "F1", New: true, Owner: "n3", Version: 1}, 50, 60)
			r := b.check(t)
			if r.LostSessions != 1 || r.LegitLost != 0 {
				t.Fatalf("lost sessions %d legit %d:\n%s", r.LostSessions, r.LegitLost, findings(r))
			}
		})
	}
	// A fresh session is no loss while the session never existed (its
	// first write was not acknowledged before), nor after an indeterminate
	// logout.
	b := newHist()
	b.op(Op{User: 1, Kind: kindGet, Node: "n1", SessionID: "U1", New: true, Owner: "n1", Values: map[string]string{}}, 0, 5)
	b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "1", Node: "n2", SentID: "U1", SessionID: "S1", New: true, Owner: "n2", Version: 1}, 10, 20)
	b.op(Op{User: 1, Kind: kindLogout, Node: "n2", SentID: "S1", Outcome: outcomeUnknown, Err: errTimeout}, 30, 40)
	b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "2", Node: "n2", SentID: "S1", SessionID: "S2", New: true, Owner: "n2", Version: 1}, 50, 60)
	if r := b.check(t); r.violations(true) != 0 {
		t.Fatalf("excused fresh sessions rejected:\n%s", findings(r))
	}
}

func TestCheckerRegenerateAndLogout(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	// Login: a new ID, the data kept.
	b.op(Op{User: 1, Kind: kindLogin, Key: "user", Value: "u1", Node: "n1", SentID: "S1", SessionID: "S2", Owner: "n1", Backup: "n2", Version: 2}, 20, 30)
	b.get(1, "S2", "n1", map[string]string{"a": "1", "user": "u1"}, 40, 50)
	// Logout, then a new session starts empty.
	b.op(Op{User: 1, Kind: kindLogout, Node: "n1", SentID: "S2", Owner: "n1"}, 60, 70)
	b.first(1, "S3", "b", "2", "n1", "n2", 80, 90)
	b.get(1, "S3", "n1", map[string]string{"b": "2"}, 100, 110)
	// The old cookie, replayed, gets a fresh empty session.
	b.op(Op{User: 1, Kind: kindReplay, Node: "n1", SentID: "S2", SessionID: "X", New: true, Owner: "n1"}, 120, 130)
	r := b.check(t)
	if r.violations(true) != 0 {
		t.Fatalf("rejected:\n%s", findings(r))
	}
	if r.Acked != 4 {
		t.Fatalf("acked %d, want 4", r.Acked)
	}
}

func TestCheckerUndoneLogout(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	b.op(Op{User: 1, Kind: kindLogout, Node: "n1", SentID: "S1", Owner: "n1"}, 20, 30)
	b.op(Op{User: 1, Kind: kindReplay, Node: "n2", SentID: "S1", SessionID: "S1", Owner: "n2", Values: map[string]string{"a": "1"}}, 40, 50)
	r := b.check(t)
	if r.UndoneLogouts != 1 {
		t.Fatalf("undone %d:\n%s", r.UndoneLogouts, findings(r))
	}
	if f := r.Findings[len(r.Findings)-1]; f.Kind != "undone_logout" || len(f.Ops) != 2 {
		t.Fatalf("finding %+v", f)
	}
}

func TestCheckerFork(t *testing.T) {
	t.Run("same version on two nodes", func(t *testing.T) {
		b := newHist()
		b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
		b.set(1, "S1", "a", "2", "n1", "n2", 5, 20, 30)
		b.set(1, "S1", "b", "3", "n2", "n3", 5, 21, 31)
		r := b.check(t)
		if r.Forks != 1 {
			t.Fatalf("forks %d:\n%s", r.Forks, findings(r))
		}
	})
	t.Run("version regression", func(t *testing.T) {
		b := newHist()
		b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
		b.set(1, "S1", "a", "2", "n1", "n2", 7, 20, 30)
		b.set(1, "S1", "b", "3", "n2", "n3", 6, 40, 50)
		r := b.check(t)
		if r.Forks != 1 {
			t.Fatalf("forks %d:\n%s", r.Forks, findings(r))
		}
	})
	t.Run("same version, same node, concurrent", func(t *testing.T) {
		b := newHist()
		b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
		b.set(1, "S1", "a", "2", "n1", "n2", 2, 20, 30)
		b.set(1, "S1", "b", "3", "n1", "n2", 3, 21, 31)
		if r := b.check(t); r.Forks != 0 {
			t.Fatalf("forks %d:\n%s", r.Forks, findings(r))
		}
	})
}

// Where a scenario leaves a node alone, its commits made while alone are
// allowed; those made while another node answered are not.
func TestCheckerDegradedAlone(t *testing.T) {
	h := newHist()
	h.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	h.h.Header.AloneOK = true
	h.h.Stats = []StatSample{{Node: "n1", Degraded: 5, DegradedAlone: 5}, {Node: "n2", Degraded: 3, DegradedAlone: 1}}
	r := check(h.h, checkConfig{sync: true})
	if r.Degraded != 2 || r.DegradedAlone != 6 || r.violations(true) != 1 {
		t.Fatalf("degraded %d alone %d violations %d", r.Degraded, r.DegradedAlone, r.violations(true))
	}
	h.h.Header.AloneOK = false
	if r := check(h.h, checkConfig{sync: true}); r.Degraded != 8 {
		t.Fatalf("without AloneOK: degraded %d, want 8", r.Degraded)
	}
}

func TestCheckerDegradedAndStall(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 2500)
	b.h.Stats = []StatSample{
		{Node: "n1", Incarnation: 0, Degraded: 3}, {Node: "n1", Incarnation: 0, Degraded: 5},
		{Node: "n1", Incarnation: 1, Degraded: 2}, {Node: "n2", Degraded: 0},
	}
	r := check(b.h, checkConfig{sync: true, maxStall: time.Second})
	if r.Degraded != 7 || !r.StallHit || r.violations(true) != 2 {
		t.Fatalf("degraded %d stall %v violations %d", r.Degraded, r.StallHit, r.violations(true))
	}
	// Async mode: degraded is reported, not a violation.
	r = check(b.h, checkConfig{sync: false})
	if r.Degraded != 7 || r.violations(false) != 0 {
		t.Fatalf("async: degraded %d violations %d", r.Degraded, r.violations(false))
	}
}

func TestRecovery(t *testing.T) {
	b := newHist()
	b.first(1, "S1", "a", "1", "n1", "n2", 0, 10)
	b.first(2, "S2", "a", "1", "n3", "n1", 0, 10)
	b.first(3, "S3", "a", "1", "n2", "n3", 0, 10)
	b.event(evKill, 100, "n1")
	b.op(Op{User: 1, Kind: kindSet, Key: "a", Value: "2", Node: "n1", SentID: "S1", Outcome: outcomeFail, Err: errRefused}, 110, 111)
	b.set(1, "S1", "a", "2", "n2", "n3", 2, 111, 130)
	b.set(2, "S2", "a", "2", "n3", "n2", 2, 105, 200)
	b.set(3, "S3", "a", "2", "n2", "n3", 2, 105, 106)
	r := b.check(t)
	if len(r.Recovery) != 2 || r.Recovery[0] != 30*time.Millisecond || r.Recovery[1] != 100*time.Millisecond {
		t.Fatalf("recovery %v", r.Recovery)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rec, err := newRecorder(filepath.Join(dir, "h.jsonl"), Header{Scenario: "x", Mode: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	rec.op(Op{ID: 2, Kind: kindGet, Values: map[string]string{"a": "1"}})
	rec.op(Op{ID: 1, Kind: kindSet, Key: "a", Value: "1"})
	rec.event(evKill, []string{"n1"}, "")
	rec.stat(StatSample{Node: "n1", Degraded: 4})
	h, err := rec.close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "h.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := readHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Scenario != "x" || len(got.Ops) != 2 || got.Ops[0].ID != 1 || got.Ops[1].Values["a"] != "1" ||
		len(got.Events) != 1 || len(got.Stats) != 1 || len(h.Ops) != 2 {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestSummaryLine(t *testing.T) {
	s := newSummary("kill9", true)
	s.add(&Result{Acked: 10, Errors: map[string]int{"conn": 2, "503": 1, "timeout": 1}, Recovery: []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond},
		LongestStall: 1600 * time.Millisecond})
	want := "chaos scenario=kill9 runs=1 acked=10 lost_writes=0 lost_sessions=0 stale_reads=0 forks=0 undone_logouts=0 degraded=0 degraded_alone=0 errors=503:1,conn:2,timeout:1 recovery_p50=20ms recovery_max=30ms longest_stall=1.6s result=PASS"
	if got := s.line(); got != want {
		t.Fatalf("line\n got %s\nwant %s", got, want)
	}
	s.add(&Result{Degraded: 3, Errors: map[string]int{}})
	if !strings.HasSuffix(s.line(), "result=FAIL") || !strings.Contains(s.line(), "runs=2") || !strings.Contains(s.line(), "degraded=3") {
		t.Fatalf("line %s", s.line())
	}
}
