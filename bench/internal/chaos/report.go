package chaos

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// summary adds up the runs of one scenario.
type summary struct {
	scenario      string
	membership    string // printed when not static
	sync          bool
	runs          int
	failedRuns    int
	acked         int
	lostWrites    int
	lostSessions  int
	legitLost     int
	staleReads    int
	forks         int
	undoneLogouts int
	degraded      uint64
	degradedAlone uint64
	stallHits     int
	errors        map[string]int
	recovery      []time.Duration
	longestStall  time.Duration
	runErrors     int // runs that could not be carried out (not a verdict on Tandem)
}

func newSummary(name string, sync bool) *summary {
	return &summary{scenario: name, sync: sync, errors: map[string]int{}}
}

func (s *summary) add(r *Result) {
	s.runs++
	if r.violations(s.sync) > 0 {
		s.failedRuns++
	}
	s.acked += r.Acked
	s.lostWrites += r.LostWrites
	s.lostSessions += r.LostSessions
	s.legitLost += r.LegitLost
	s.staleReads += r.StaleReads
	s.forks += r.Forks
	s.undoneLogouts += r.UndoneLogouts
	s.degraded += r.Degraded
	s.degradedAlone += r.DegradedAlone
	if r.StallHit {
		s.stallHits++
	}
	for k, v := range r.Errors {
		s.errors[k] += v
	}
	s.recovery = append(s.recovery, r.Recovery...)
	s.longestStall = max(s.longestStall, r.LongestStall)
}

// pass reports whether no run broke a rule (and every run ran).
func (s *summary) pass() bool { return s.failedRuns == 0 && s.runErrors == 0 && s.runs > 0 }

// line is the one line per scenario that scripts read.
func (s *summary) line() string {
	slices.Sort(s.recovery)
	var p50, pmax time.Duration
	if n := len(s.recovery); n > 0 {
		p50, pmax = s.recovery[(n-1)/2], s.recovery[n-1]
	}
	result := "PASS"
	if !s.pass() {
		result = "FAIL"
	}
	name := s.scenario
	if gossips(s.membership) {
		name += " membership=" + s.membership
	}
	return fmt.Sprintf("chaos scenario=%s runs=%d acked=%d lost_writes=%d lost_sessions=%d stale_reads=%d forks=%d undone_logouts=%d degraded=%d degraded_alone=%d errors=%s recovery_p50=%s recovery_max=%s longest_stall=%s result=%s",
		name, s.runs, s.acked, s.lostWrites, s.lostSessions, s.staleReads, s.forks, s.undoneLogouts, s.degraded, s.degradedAlone,
		formatErrors(s.errors), dur(p50), dur(pmax), dur(s.longestStall), result)
}

// formatErrors prints error counts as 503:N,conn:N,...: the statuses
// first, then transport errors; 503 and conn always.
func formatErrors(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	for _, k := range []string{"503", errRefused} {
		if _, ok := m[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		da, db := a[0] >= '0' && a[0] <= '9', b[0] >= '0' && b[0] <= '9'
		if da != db {
			if da {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

// dur prints a duration rounded to the millisecond (microseconds below
// one).
func dur(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// runLine is the per-run line on stderr.
func runLine(name string, run int, r *Result, sync bool, dir string) string {
	verdict := "PASS"
	if r.violations(sync) > 0 {
		verdict = "FAIL"
	}
	return fmt.Sprintf("chaos-run scenario=%s run=%d acked=%d lost_writes=%d lost_sessions=%d legit_lost=%d stale_reads=%d forks=%d undone_logouts=%d degraded=%d longest_stall=%s result=%s dir=%s",
		name, run, r.Acked, r.LostWrites, r.LostSessions, r.LegitLost, r.StaleReads, r.Forks, r.UndoneLogouts, r.Degraded, dur(r.LongestStall), verdict, dir)
}

// writeReport writes report.txt, naming the operations of every finding,
// and porcupine's visualization of each register it rejected.
func writeReport(dir string, h History, r *Result) error {
	var b strings.Builder
	hd := h.Header
	fmt.Fprintf(&b, "chaos report: scenario %s, run %d, seed %d, %s mode, %s app, %s membership, nodes %v, %d users, started %s\n",
		hd.Scenario, hd.Run, hd.Seed, hd.Mode, hd.App, cmp.Or(hd.Membership, static), hd.Nodes, hd.Users, hd.Started.Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "times are milliseconds since the start; node logs (JSON, wall clock) are n*.log beside this file\n\n")
	fmt.Fprintf(&b, "acked=%d lost_writes=%d lost_sessions=%d legit_lost=%d stale_reads=%d forks=%d undone_logouts=%d degraded=%d longest_stall=%s unchecked=%d\n\n",
		r.Acked, r.LostWrites, r.LostSessions, r.LegitLost, r.StaleReads, r.Forks, r.UndoneLogouts, r.Degraded, dur(r.LongestStall), r.Unchecked)
	b.WriteString("events:\n")
	for _, e := range h.Events {
		fmt.Fprintf(&b, "  %10s  %-9s %v %s\n", ms(e.At), e.Kind, e.Nodes, e.Detail)
	}
	b.WriteString("\nfindings:\n")
	for i, f := range r.Findings {
		fmt.Fprintf(&b, "%d. [%s] %s\n", i+1, f.Kind, f.Text)
		for _, o := range f.Ops {
			fmt.Fprintf(&b, "     %s\n", describeOp(o))
		}
		if f.Kind == "lost_write" || f.Kind == "stale_read" || f.Kind == "lost_session" {
			if len(f.Ops) > 0 {
				writeUserContext(&b, h, f.Ops[0])
			}
		}
	}
	if r.StallOp != nil {
		fmt.Fprintf(&b, "\nslowest request: %s\n", describeOp(r.StallOp))
	}
	model := registerModel()
	if len(r.Bad) > 0 {
		b.WriteString("\nvisualizations (open in a browser):\n")
	}
	for i, br := range r.Bad {
		if i == 20 {
			fmt.Fprintf(&b, "  ... %d more registers not drawn\n", len(r.Bad)-i)
			break
		}
		name := fmt.Sprintf("register-u%d-l%d-%s.html", br.lineage.user, br.lineage.n, br.key)
		if err := porcupine.VisualizePath(model, br.info, filepath.Join(dir, name)); err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(&b, "  %s (user %d, lineage %d, key %q, %d ops)\n", name, br.lineage.user, br.lineage.n, br.key, len(br.ops))
	}
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// describeOp prints one op on one line.
func describeOp(o *Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "op %d user %d round %d slot %d %s", o.ID, o.User, o.Round, o.Slot, o.Kind)
	if o.Key != "" {
		fmt.Fprintf(&b, " %s=%q", o.Key, o.Value)
	}
	if o.Final {
		b.WriteString(" (final)")
	}
	fmt.Fprintf(&b, " to %s [%s .. %s] ", o.Node, ms(o.Invoke), ms(o.Return))
	if o.Status != 0 {
		fmt.Fprintf(&b, "status %d", o.Status)
	}
	if o.Err != "" {
		fmt.Fprintf(&b, "error %s", o.Err)
	}
	fmt.Fprintf(&b, " %s sent %s got %s new=%v served_by=%s owner=%s backup=%s version=%d",
		o.Outcome, short(o.SentID), short(o.SessionID), o.New, o.ServedBy, o.Owner, o.Backup, o.Version)
	if o.Values != nil {
		fmt.Fprintf(&b, " values=%v", o.Values)
	}
	if o.RetryOf != 0 {
		fmt.Fprintf(&b, " retry_of=%d", o.RetryOf)
	}
	if o.Detail != "" {
		fmt.Fprintf(&b, " (%s)", o.Detail)
	}
	return b.String()
}

// writeUserContext prints the user's ops around o: what led to it.
func writeUserContext(b *strings.Builder, h History, o *Op) {
	var ops []*Op
	for i := range h.Ops {
		if x := &h.Ops[i]; x.User == o.User {
			ops = append(ops, x)
		}
	}
	slices.SortFunc(ops, func(a, b *Op) int { return cmp.Or(cmp.Compare(a.Invoke, b.Invoke), cmp.Compare(a.ID, b.ID)) })
	i := slices.IndexFunc(ops, func(x *Op) bool { return x.ID == o.ID })
	if i < 0 {
		return
	}
	lo, hi := max(i-6, 0), min(i+4, len(ops))
	fmt.Fprintf(b, "     user %d around it:\n", o.User)
	for _, x := range ops[lo:hi] {
		mark := " "
		if x.ID == o.ID {
			mark = ">"
		}
		fmt.Fprintf(b, "      %s %s\n", mark, describeOp(x))
	}
}

// failedRun is a run that broke a rule (res) or could not be carried out
// (err), for the recap at the end of a sweep.
type failedRun struct {
	scenario string
	run      int
	dir      string
	res      *Result
	err      error
}

// recap prints every failed run with its first findings, or its error and
// the last lines of its node logs: a sweep's last lines say what failed.
func recap(w io.Writer, failed []failedRun) {
	if len(failed) == 0 {
		return
	}
	fmt.Fprintf(w, "chaos: %d run(s) failed:\n", len(failed))
	for _, f := range failed {
		fmt.Fprintf(w, "- %s run %d (%s):", f.scenario, f.run, f.dir)
		if f.err != nil {
			fmt.Fprintf(w, " not carried out: %v\n", f.err)
			logs, _ := filepath.Glob(filepath.Join(f.dir, "n*.log"))
			for _, l := range logs {
				for _, line := range lastLines(l, 5) {
					fmt.Fprintf(w, "    %s: %s\n", filepath.Base(l), line)
				}
			}
			continue
		}
		fmt.Fprintf(w, " lost_writes=%d lost_sessions=%d stale_reads=%d forks=%d undone_logouts=%d degraded=%d longest_stall=%s; report.txt beside its history\n",
			f.res.LostWrites, f.res.LostSessions, f.res.StaleReads, f.res.Forks, f.res.UndoneLogouts, f.res.Degraded, dur(f.res.LongestStall))
		for i, fd := range f.res.Findings {
			if i == 5 {
				fmt.Fprintf(w, "    ... and %d more findings\n", len(f.res.Findings)-i)
				break
			}
			fmt.Fprintf(w, "    %s: %s\n", fd.Kind, fd.Text)
		}
	}
}

// lastLines returns a file's last n lines, each cut to 300 bytes (none if
// it cannot be read).
func lastLines(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "..."
		}
	}
	return lines
}
