// Command report turns the JSON reports of bench/load runs (as bench/run.sh
// writes them) into a results page, bench/results/DATE.md, and the charts
// docs/bench-throughput.svg, docs/bench-wire.svg and docs/bench-failover.svg.
//
//	go run ./bench/report -in bench/results/tmp -md bench/results/2026-11-25.md -svg docs
//
// Runs are grouped by label; a label run several times (rounds) is
// reported as the mean of its rounds, with the spread.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tandemsession/tandem/bench/internal/chart"
	"github.com/tandemsession/tandem/bench/internal/loadreport"
)

// run is one bench/load report and the file it came from.
type run struct {
	loadreport.Report
	file string
}

// group is every round of one label.
type group struct {
	label string
	runs  []*run
}

func (g *group) first() *run { return g.runs[0] }

// mean returns the mean of f over the rounds, and the spread (max-min) as a
// share of the mean.
func (g *group) mean(f func(*run) float64) (m, spread float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range g.runs {
		v := f(r)
		m += v
		lo, hi = min(lo, v), max(hi, v)
	}
	m /= float64(len(g.runs))
	if m != 0 && len(g.runs) > 1 {
		spread = (hi - lo) / m
	}
	return m, spread
}

func rps(r *run) float64  { return r.RPS }
func p50(r *run) float64  { return r.P50 }
func p99(r *run) float64  { return r.P99 }
func p999(r *run) float64 { return r.P999 }
func scpu(r *run) float64 { return r.ServerCPUPer1k }
func dcpu(r *run) float64 { return r.DriverCPUPer1k }
func wire(r *run) float64 {
	if r.Repl == nil {
		return 0
	}
	return r.Repl.WirePerWrite
}

func main() {
	in := flag.String("in", "bench/results/tmp", "directory of bench/load -json reports")
	md := flag.String("md", "", "results page to write (default bench/results/DATE.md)")
	svgDir := flag.String("svg", "docs", "directory for the SVG charts")
	script := flag.String("script", "bench/run.sh", "the script named on the page")
	elapsed := flag.String("elapsed", "", "how long the script ran, for the page")
	flag.Parse()
	if err := report(*in, *md, *svgDir, *script, *elapsed); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func report(in, md, svgDir, script, elapsed string) error {
	files, err := filepath.Glob(filepath.Join(in, "*.json"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	groups := map[string]*group{}
	var order []string
	var all []*run
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			return err
		}
		r := &run{file: filepath.Base(fn)}
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("%s: %w", fn, err)
		}
		if r.Load == nil {
			return fmt.Errorf("%s: no load section: not a bench/load report", fn)
		}
		all = append(all, r)
		g := groups[r.Label]
		if g == nil {
			g = &group{label: r.Label}
			groups[r.Label] = g
			order = append(order, r.Label)
		}
		g.runs = append(g.runs, r)
	}
	if len(all) == 0 {
		return fmt.Errorf("no reports in %s", in)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Date < all[j].Date })
	date := all[0].Date[:10]
	if md == "" {
		md = filepath.Join("bench", "results", date+".md")
	}
	p := &page{groups: groups, order: order, all: all, date: date, script: script, elapsed: elapsed}
	if err := os.MkdirAll(filepath.Dir(md), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(svgDir, 0o755); err != nil {
		return err
	}
	charts := map[string][]byte{
		"bench-throughput.svg": p.throughputChart(),
		"bench-wire.svg":       p.wireChart(),
		"bench-failover.svg":   p.failoverChart(),
	}
	for name, b := range charts {
		if b == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(svgDir, name), b, 0o644); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(filepath.Dir(md), svgDir)
	if err != nil {
		rel = svgDir
	}
	p.svgRel = rel
	return os.WriteFile(md, []byte(p.markdown()), 0o644)
}

type page struct {
	groups  map[string]*group
	order   []string
	all     []*run
	date    string
	script  string
	elapsed string
	svgRel  string
}

func (p *page) get(label string) *group { return p.groups[label] }

// Labels bench/run.sh uses.
const (
	syncW      = "tandem-sync-write"
	asyncW     = "tandem-async-write"
	offW       = "tandem-off-write"
	redisW     = "gincontrib-redis-write"
	syncR      = "tandem-sync-read"
	noneR      = "nosession-read"
	syncKill   = "failover-tandem-sync"
	asyncKill  = "failover-tandem-async"
	redisKill  = "failover-gincontrib-redis-2node"
	wirePrefix = "wire-"
)

// writeLabels and readLabels are the rows of the throughput tables, in
// order.
var (
	writeLabels = []string{syncW, asyncW, offW, "nosession-write", redisW, "gincontrib-cookie-write", "scs-mem-write", "scs-redis-write"}
	readLabels  = []string{syncR, "tandem-off-read", noneR, "gincontrib-redis-read", "gincontrib-cookie-read", "scs-mem-read", "scs-redis-read"}
)

func describe(r *run) string {
	switch r.Target {
	case "tandem":
		return fmt.Sprintf("Tandem, %s", map[string]string{"sync": "buddy Sync", "async": "buddy Async", "off": "no replication"}[r.Mode])
	case "nosession":
		return "Gin, no session (ceiling)"
	case "gincontrib-redis", "gincontrib-redis-2node":
		return "gin-contrib/sessions, Redis"
	case "gincontrib-cookie":
		return "gin-contrib/sessions, cookie"
	case "scs-mem":
		return "scs, memstore"
	case "scs-redis":
		return "scs, Redis"
	}
	return r.Target
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// perRound returns the ratio of a's to b's f in each round both ran, as
// "per round: 2.6x, 3.1x" (or percentages), or "" for a single round.
// Rounds run interleaved, so each ratio compares runs minutes apart.
func perRound(a, b *group, f func(*run) float64, pct bool) string {
	n := min(len(a.runs), len(b.runs))
	if n < 2 {
		return ""
	}
	var parts []string
	for i := range n {
		x := ratio(f(a.runs[i]), f(b.runs[i]))
		if pct {
			parts = append(parts, fmt.Sprintf("%.0f%%", 100*x))
		} else {
			parts = append(parts, fmt.Sprintf("%.2fx", x))
		}
	}
	return "; per round: " + strings.Join(parts, ", ")
}

// roundRatio returns the median over the rounds both ran of a's f over
// b's f (rounds run interleaved, so each ratio compares runs minutes
// apart and the median discards a round one variant was unlucky in), or
// the ratio of the means with a single round.
func roundRatio(a, b *group, f func(*run) float64) float64 {
	n := min(len(a.runs), len(b.runs))
	if n < 2 {
		ma, _ := a.mean(f)
		mb, _ := b.mean(f)
		return ratio(ma, mb)
	}
	var xs []float64
	for i := range n {
		xs = append(xs, ratio(f(a.runs[i]), f(b.runs[i])))
	}
	sort.Float64s(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// goals evaluates the goals on this run.
func (p *page) goals() [][]string {
	var rows [][]string
	sw, rw := p.get(syncW), p.get(redisW)
	if sw != nil && rw != nil {
		a, _ := sw.mean(rps)
		b, _ := rw.mean(rps)
		ap, _ := sw.mean(p99)
		bp, _ := rw.mean(p99)
		x, xp := roundRatio(sw, rw, rps), roundRatio(sw, rw, p99)
		rows = append(rows, []string{"3 nodes, sync, write-heavy, 64 clients: ≥ 2x the req/s of gin-contrib/sessions + Redis, and a lower p99",
			fmt.Sprintf("**%.2fx** the req/s%s (means %.0f vs %.0f); p99 %.1f vs %.1f ms (**%.2fx**)", x, perRound(sw, rw, rps, false), a, b, ap, bp, xp),
			verdict(x >= 2 && xp < 1)})
	}
	pctRow := func(goal string, a, b *group, min float64, judge bool) {
		if a == nil || b == nil {
			return
		}
		ma, _ := a.mean(rps)
		mb, _ := b.mean(rps)
		x := roundRatio(a, b, rps)
		v := "reference"
		if judge {
			v = verdict(x >= min)
		}
		rows = append(rows, []string{goal, fmt.Sprintf("**%.0f%%** of its req/s%s (means %.0f vs %.0f)", 100*x, perRound(a, b, rps, true), ma, mb), v})
	}
	aw, ow := p.get(asyncW), p.get(offW)
	pctRow("async within 15% of the same app without replication", aw, ow, 0.85, true)
	pctRow("(for reference: sync vs the same app without replication; the ≥ 60% goal is the in-process benchmark's, see bench/README.md)", sw, ow, 0.6, false)
	pctRow("read-only within 10% of the no-session ceiling", p.get(syncR), p.get(noneR), 0.9, true)
	if w := p.wireAt(4096, 1); w != nil && w.Repl != nil {
		d := w.Repl.WirePerWrite
		rows = append(rows, []string{"wire bytes per write, 4 KiB session, one small attribute changed: < 200 B",
			fmt.Sprintf("**%.0f B** per write unbatched (1 client); %s", d, p.wireAt64(4096)), verdict(d < 200)})
		rows = append(rows, []string{"… and ≤ 1/20 of sending the whole session",
			fmt.Sprintf("whole session %d B raw = **1/%.0f**; %d B compressed and sealed on the wire = **1/%.0f**",
				w.FullCopyRaw, float64(w.FullCopyRaw)/d, w.FullCopyWire, float64(w.FullCopyWire)/d),
			verdict(float64(w.FullCopyWire)/d >= 20) + " (vs the wire copy)"})
	}
	sk, rk := p.get(syncKill), p.get(redisKill)
	if sk != nil && sk.first().Load.Verify != nil {
		r := sk.first()
		v, f := r.Load.Verify, r.Load.Failover
		rec := ""
		if f != nil {
			rec = fmt.Sprintf("; %d requests failed, users back within %.0f ms", f.FailedAfter, f.RecoveryMax)
		}
		rows = append(rows, []string{"zero acknowledged writes lost when one node is killed (sync)",
			fmt.Sprintf("**%d of %d** lost, %d sessions lost%s", v.LostWrites, v.AckedWrites, v.SessionsLost, rec),
			verdict(v.LostWrites == 0 && v.SessionsLost == 0)})
	}
	if rk != nil && rk.first().Load.Verify != nil {
		r := rk.first()
		v, f := r.Load.Verify, r.Load.Failover
		out := ""
		if f != nil {
			out = fmt.Sprintf("; outage %.1f s (%d failed requests)", f.Window/1000, f.FailedAfter)
		}
		rows = append(rows, []string{"… vs the one-Redis peer when Redis is killed: non-zero loss or outage",
			fmt.Sprintf("**%d of %d** lost, %d of %d sessions lost%s", v.LostWrites, v.AckedWrites, v.SessionsLost, v.Users, out),
			"shown"})
	}
	return rows
}

// wireAt returns the wire run at session size ~size with the given clients.
func (p *page) wireAt(size, clients int) *run {
	g := p.get(fmt.Sprintf("%s%d-c%d", wirePrefix, size, clients))
	if g == nil {
		return nil
	}
	return g.first()
}

func (p *page) wireAt64(size int) string {
	w := p.wireAt(size, 64)
	if w == nil || w.Repl == nil {
		return ""
	}
	return fmt.Sprintf("%.0f B batched (64 clients, %.0f records/batch)", w.Repl.WirePerWrite, w.Repl.RecordsPerBatch)
}

func (p *page) markdown() string {
	var b strings.Builder
	m := p.all[0].Machine
	fmt.Fprintf(&b, "# Load benchmark results, %s\n\n", p.date)
	fmt.Fprintf(&b, "Written by `%s` (`go run ./bench/report`) from the JSON reports of `go run ./bench/load`; every figure on this page comes from that one run of the script", p.script)
	if p.elapsed != "" {
		fmt.Fprintf(&b, " (%s)", p.elapsed)
	}
	b.WriteString(".\n\n")
	fmt.Fprintf(&b, "| machine | |\n| --- | --- |\n| CPU | %s, %d cores (shared with other engineers' test runs) |\n| memory | %.1f GiB |\n| kernel | %s |\n| Go | %s |\n| load average when the first run started | %s |\n| date | %s |\n\n",
		m.CPU, m.Cores, m.MemGiB, m.Kernel, m.Go, m.LoadAvg, p.all[0].Date)
	b.WriteString("Everything runs on this one machine: the nodes (child processes), Redis, and the load driver, whose CPU cost is reported separately. Loopback only. Rates are successful requests per second; latencies are measured by the client, per request. Labels run more than once (rounds, interleaved with the others) show the mean and, after ±, half the spread between rounds as a share of the mean. The goals compare variants round by round and take the median of those ratios: rounds minutes apart on a shared machine differ more than variants within one round.\n\n")

	b.WriteString("## Goals\n\n| goal | measured | verdict |\n| --- | --- | --- |\n")
	for _, r := range p.goals() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	b.WriteString("\n")

	table := func(title string, labels []string) {
		var rows []*group
		for _, l := range labels {
			if g := p.get(l); g != nil {
				rows = append(rows, g)
			}
		}
		if len(rows) == 0 {
			return
		}
		r0 := rows[0].first()
		fmt.Fprintf(&b, "## %s\n\n%d clients, write ratio %.2f, sessions of %d B, %s measured per round after a warm-up.\n\n", title, r0.Clients, r0.WriteRatio, r0.SessionSize, r0.Duration)
		b.WriteString("| variant | nodes | rounds | req/s | p50 ms | p99 ms | p99.9 ms | server CPU s / 1k req | driver CPU s / 1k req | wire B / write | failed |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, g := range rows {
			r := g.first()
			mr, sr := g.mean(rps)
			m50, _ := g.mean(p50)
			m99, s99 := g.mean(p99)
			m999, _ := g.mean(p999)
			sc, _ := g.mean(scpu)
			dc, _ := g.mean(dcpu)
			wb := "–"
			if r.Repl != nil && r.WriteRatio > 0 {
				w, _ := g.mean(wire)
				wb = fmt.Sprintf("%.0f", w)
			}
			var failed int64
			for _, x := range g.runs {
				failed += x.Load.Failed
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %.0f%s | %.2f | %.2f%s | %.2f | %.4f | %.4f | %s | %d |\n",
				describe(r), r.Nodes, len(g.runs), mr, spread(sr), m50, m99, spread(s99), m999, sc, dc, wb, failed)
		}
		b.WriteString("\n")
	}
	table("Write-heavy", writeLabels)
	p.lagTable(&b)
	table("Read-only", readLabels)
	fmt.Fprintf(&b, "![throughput and p99](%s/bench-throughput.svg)\n\n", p.svgRel)

	// Wire sizes.
	var sizes []int
	for _, l := range p.order {
		var size, c int
		if n, _ := fmt.Sscanf(l, wirePrefix+"%d-c%d", &size, &c); n == 2 && c == 1 {
			sizes = append(sizes, size)
		}
	}
	sort.Ints(sizes)
	if len(sizes) > 0 {
		b.WriteString("## Bytes on the wire per write\n\nOne small attribute changes per write (`/bench/write?k=cN&v=<counter>`) in a session of the given size, buddy Sync, 3 nodes. Measured: the nodes' `BytesWire` (request bodies as sent: compressed and sealed; HTTP/2 framing not included) over the acknowledged writes. Whole session: the same encoding of a full copy of that session (`buddy.AppendBatch` of a `KindFull` record, zstd-fastest, sealed), what a store that ships whole sessions would send per write.\n\n")
		b.WriteString("| session | delta, 1 client (B / write) | delta, 64 clients (B / write) | records / batch at 64 | whole session raw (B) | whole session on the wire (B) | wire delta / whole (1 client) |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, s := range sizes {
			one, many := p.wireAt(s, 1), p.wireAt(s, 64)
			if one == nil || one.Repl == nil {
				continue
			}
			mw, mb := "–", "–"
			if many != nil && many.Repl != nil {
				mw = fmt.Sprintf("%.0f", many.Repl.WirePerWrite)
				mb = fmt.Sprintf("%.1f", many.Repl.RecordsPerBatch)
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %d | %d | 1/%.0f |\n", kib(s), one.Repl.WirePerWrite, mw, mb,
				one.FullCopyRaw, one.FullCopyWire, float64(one.FullCopyWire)/one.Repl.WirePerWrite)
		}
		fmt.Fprintf(&b, "\n![wire bytes per write](%s/bench-wire.svg)\n\n", p.svgRel)
	}

	// Failover.
	b.WriteString("## Failover\n\nWrite-heavy load (64 clients); at the kill time the driver sends SIGKILL to node n1 (Tandem) or to redis-server (the peer: two Gin nodes sharing one Redis without persistence, restarted empty after a pause, as a supervisor would). Users whose node refuses connections go to the next node, as a sticky balancer would. At the end every user reads its session back (`/bench/get`) and the driver counts the writes it got a 200 for that the session no longer holds.\n\n")
	b.WriteString("| variant | killed | acknowledged writes lost | sessions lost | failed requests after the kill | users affected | back within (max) | failing window | degraded sync commits |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, l := range []string{syncKill, asyncKill, redisKill} {
		g := p.get(l)
		if g == nil {
			continue
		}
		r := g.first()
		v, f := r.Load.Verify, r.Load.Failover
		if v == nil || f == nil || r.Kill == nil {
			continue
		}
		deg := "–"
		if r.Repl != nil {
			deg = fmt.Sprint(r.Repl.Degraded)
		}
		fmt.Fprintf(&b, "| %s | %s at %.1f s | %d of %d | %d of %d | %d | %d | %.0f ms | %.0f ms | %s |\n",
			describe(r), r.Kill.What, r.Kill.AtMs/1000, v.LostWrites, v.AckedWrites, v.SessionsLost, v.Users,
			f.FailedAfter, f.Affected, f.RecoveryMax, f.Window, deg)
	}
	fmt.Fprintf(&b, "\n![failover timeline](%s/bench-failover.svg)\n\n", p.svgRel)

	b.WriteString("## Commands\n\n```sh\n")
	fmt.Fprintf(&b, "%s   # all of the below, then go run ./bench/report\n", p.script)
	seen := map[string]bool{}
	for _, r := range p.all {
		c := strings.ReplaceAll(r.Command, "go run ./bench/load", "load")
		c = stripJSON(c)
		if !seen[c] {
			seen[c] = true
			fmt.Fprintf(&b, "%s\n", c)
		}
	}
	b.WriteString("```\n\n`load` is `go build -o bench/results/tmp/load ./bench/load`, built once by the script.\n")
	return b.String()
}

// lagTable writes the replication figures of the write-heavy Tandem runs,
// round by round.
func (p *page) lagTable(b *strings.Builder) {
	var rows []string
	for _, l := range []string{syncW, asyncW} {
		g := p.get(l)
		if g == nil {
			continue
		}
		for i, r := range g.runs {
			rp := r.Repl
			if rp == nil {
				continue
			}
			rows = append(rows, fmt.Sprintf("| %s | %d | %.0f | %.1f | ≤ %d / ≤ %d | %d | %.1f |", describe(r), i+1, rp.WirePerWrite, rp.RecordsPerBatch, rp.RTTP50, rp.RTTP99, rp.MaxQueue, rp.DrainMs))
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("Replication during the write-heavy runs, from the nodes' `/api/stats`: batch round trip (power-of-two buckets, so upper bounds), the most records queued for a buddy (sampled every 250 ms), and how long the queues took to empty once the load stopped. In Sync mode a write waits one batch round trip; in Async mode that round trip plus the queue is the replication lag.\n\n")
	b.WriteString("| variant | round | wire B / write | records / batch | batch round trip p50 / p99 (µs) | max queue (records) | drain after the load (ms) |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("\n")
}

// stripJSON removes the -json argument from a command line.
func stripJSON(c string) string {
	f := strings.Fields(c)
	var out []string
	for i := 0; i < len(f); i++ {
		if f[i] == "-json" || f[i] == "--json" {
			i++
			continue
		}
		out = append(out, f[i])
	}
	return strings.Join(out, " ")
}

func spread(s float64) string {
	if s == 0 {
		return ""
	}
	return fmt.Sprintf(" ±%.0f%%", 100*s/2)
}

func kib(n int) string {
	if n >= 1024 && n%1024 < 64 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func (p *page) throughputChart() []byte {
	var rpsBars, p99Bars []chart.Bar
	add := func(labels []string, suffix string, read bool) {
		for _, l := range labels {
			g := p.get(l)
			if g == nil {
				continue
			}
			r := g.first()
			color := chart.Gray
			switch {
			case r.Target == "tandem" && r.Mode == "sync":
				color = chart.Blue
			case r.Target == "tandem" && r.Mode == "async":
				color = "#6c93e0"
			case r.Target == "tandem":
				color = "#a9c0ee"
			case r.Target == "nosession":
				color = chart.Green
			case strings.Contains(r.Target, "redis"):
				color = chart.Red
			case r.Target == "gincontrib-cookie":
				color = chart.Orange
			case r.Target == "scs-mem":
				color = chart.Purple
			}
			mr, _ := g.mean(rps)
			m99, _ := g.mean(p99)
			label := describe(r) + suffix
			rpsBars = append(rpsBars, chart.Bar{Label: label, Value: mr, Color: color})
			p99Bars = append(p99Bars, chart.Bar{Label: label, Value: m99, Color: color})
		}
	}
	add(writeLabels, " · write", false)
	add(readLabels, " · read", true)
	if len(rpsBars) == 0 {
		return nil
	}
	r0 := p.all[0]
	return chart.Bars("Throughput and p99 latency, 64 clients, 3 nodes",
		fmt.Sprintf("%s; %s, %d cores; driver on the same machine; write = every request changes one attribute, read = reads one", p.date, r0.Machine.CPU, r0.Machine.Cores),
		[]chart.BarPanel{
			{Title: "requests / s (higher is better)", Bars: rpsBars},
			{Title: "p99 latency, ms (lower is better)", Bars: p99Bars, Format: func(v float64) string { return fmt.Sprintf("%.1f", v) }},
		})
}

func (p *page) wireChart() []byte {
	var sizes []int
	for _, l := range p.order {
		var size, c int
		if n, _ := fmt.Sscanf(l, wirePrefix+"%d-c%d", &size, &c); n == 2 && c == 1 {
			sizes = append(sizes, size)
		}
	}
	if len(sizes) == 0 {
		return nil
	}
	sort.Ints(sizes)
	var full, raw, one, many chart.Series
	full = chart.Series{Name: "whole session, on the wire", Color: chart.Red}
	raw = chart.Series{Name: "whole session, raw", Color: chart.Red, Dash: "5,4"}
	one = chart.Series{Name: "delta, 1 client", Color: chart.Blue}
	many = chart.Series{Name: "delta, 64 clients (batched)", Color: chart.Blue, Dash: "5,4"}
	for _, s := range sizes {
		o := p.wireAt(s, 1)
		if o == nil || o.Repl == nil {
			continue
		}
		x := float64(o.SessionSize)
		full.X, full.Y = append(full.X, x), append(full.Y, float64(o.FullCopyWire))
		raw.X, raw.Y = append(raw.X, x), append(raw.Y, float64(o.FullCopyRaw))
		one.X, one.Y = append(one.X, x), append(one.Y, o.Repl.WirePerWrite)
		one.Labels = append(one.Labels, fmt.Sprintf("%.0f B", o.Repl.WirePerWrite))
		full.Labels = append(full.Labels, fmt.Sprintf("%d B", o.FullCopyWire))
		if m := p.wireAt(s, 64); m != nil && m.Repl != nil {
			many.X, many.Y = append(many.X, x), append(many.Y, m.Repl.WirePerWrite)
		}
	}
	lc := chart.LineChart{
		Title:    "Replication bytes per write vs session size",
		Subtitle: p.date + "; one small attribute changes per write; buddy Sync, zstd-fastest, sealed; log-log",
		XLabel:   "session size (keys + JSON values)",
		YLabel:   "bytes per write",
		XTicks:   []float64{512, 1024, 4096, 16384, 65536, 131072},
		YTicks:   []float64{10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000},
		XFormat: func(v float64) string {
			if v >= 1024 {
				return fmt.Sprintf("%.0f KiB", v/1024)
			}
			return fmt.Sprintf("%.0f B", v)
		},
		YFormat: func(v float64) string {
			if v >= 1000 {
				return fmt.Sprintf("%.0fk", v/1000)
			}
			return fmt.Sprintf("%.0f", v)
		},
		Series: []chart.Series{raw, full, one, many},
	}
	lc.Band.Y1, lc.Band.Y2, lc.Band.Label = 10, 200, "goal: < 200 B per write"
	return lc.SVG()
}

func (p *page) failoverChart() []byte {
	var panels []chart.Timeline
	bucket := 100.0
	for _, l := range []string{syncKill, asyncKill, redisKill} {
		g := p.get(l)
		if g == nil {
			continue
		}
		r := g.first()
		if r.Kill == nil || len(r.Load.Timeline) < 2 {
			continue
		}
		bucket = r.Load.Timeline[1].T - r.Load.Timeline[0].T
		tl := chart.Timeline{Marker: r.Kill.What}
		for _, b := range r.Load.Timeline {
			t := b.T - r.Kill.AtMs
			if t < -1500 || t > 4500 {
				continue
			}
			tl.T = append(tl.T, t)
			tl.OK = append(tl.OK, float64(b.OK))
			tl.Fail = append(tl.Fail, float64(b.Fail))
		}
		tl.Title = describe(r) + ", " + fmt.Sprint(r.Nodes) + " nodes"
		if v := r.Load.Verify; v != nil {
			tl.Notes = fmt.Sprintf("acknowledged writes lost: %d of %d; sessions lost: %d of %d", v.LostWrites, v.AckedWrites, v.SessionsLost, v.Users)
		}
		panels = append(panels, tl)
	}
	if len(panels) == 0 {
		return nil
	}
	return chart.Timelines("Failover: requests per 100 ms around a kill -9",
		p.date+"; write-heavy, 64 clients; time relative to the kill", bucket, panels)
}
