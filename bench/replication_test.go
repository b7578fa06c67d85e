package bench

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/bench/internal/inproc"
	"github.com/tandemsession/tandem/bench/internal/leanhttp"
	"github.com/tandemsession/tandem/bench/internal/loadgen"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// modes are the variants compared, in the order they run.
var modes = []inproc.Mode{inproc.Off, inproc.Async, inproc.Sync}

// sessionSize is the size of every user's session (keys plus JSON values).
const sessionSize = 4 << 10

func sampleSession(tb testing.TB, size int) []loadgen.Attr {
	tb.Helper()
	sample, err := loadgen.ReadSample(filepath.Join("testdata", "session.json"))
	if err != nil {
		tb.Fatal(err)
	}
	return loadgen.SizedSession(sample, size)
}

// buddyTuning reads the buddy settings the benchmarks may be told to try:
// TANDEM_BENCH_CODEC (a compress codec name) and TANDEM_BENCH_LINGER (an
// AsyncLinger duration). Unset, the nodes run buddy's defaults.
func buddyTuning(tb testing.TB) func(*buddy.Config) {
	tb.Helper()
	codec := os.Getenv("TANDEM_BENCH_CODEC")
	linger := os.Getenv("TANDEM_BENCH_LINGER")
	if codec == "" && linger == "" {
		return nil
	}
	var d time.Duration
	if linger != "" {
		var err error
		if d, err = time.ParseDuration(linger); err != nil {
			tb.Fatalf("TANDEM_BENCH_LINGER: %v", err)
		}
	}
	return func(c *buddy.Config) {
		if codec != "" {
			c.Compression.Codec = codec
		}
		if linger != "" {
			c.AsyncLinger = d
		}
	}
}

func startCluster(tb testing.TB, mode inproc.Mode) *inproc.Cluster {
	tb.Helper()
	c, err := inproc.Start(2, mode, buddyTuning(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

func target(c *inproc.Cluster) loadgen.Target {
	return loadgen.Target{Addrs: c.Addrs(), IDs: c.IDs(), RouteCookie: nodeapp.RouteCookie}
}

func stats(tb testing.TB, c *inproc.Cluster) inproc.Repl {
	tb.Helper()
	st, err := c.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return inproc.Sum(st)
}

// BenchmarkReplication measures, in one run, the same Gin app (the demo
// node app: ginsession on a core.Manager) on two nodes with replication off,
// with buddy Async and with buddy Sync, under 1, 16 and 64 concurrent
// clients. Each client is one user with a 4 KiB session; every request is
// GET /bench/write, which changes one small attribute. The three clusters
// run side by side in this process and the variants of one concurrency run
// back to back, so their ratios come from the same conditions.
//
// Metrics: req/s (successful requests per second), p50-us and p99-us
// (client-side latency), wire-B/write (replication bytes on the wire per
// acknowledged write, BytesWire over writes, from Node.Stats).
func BenchmarkReplication(b *testing.B) {
	session := sampleSession(b, sessionSize)
	clusters := map[inproc.Mode]*inproc.Cluster{}
	for _, m := range modes {
		clusters[m] = startCluster(b, m)
	}
	for _, clients := range []int{1, 16, 64} {
		for _, m := range modes {
			b.Run(fmt.Sprintf("c=%d/%s", clients, m), func(b *testing.B) {
				c := clusters[m]
				var before inproc.Repl
				res, err := loadgen.Run(target(c), loadgen.Options{
					Clients:    clients,
					Requests:   int64(b.N),
					Duration:   2 * time.Minute, // a bound; b.N ends the run
					WriteRatio: 1,
					Session:    session,
					OnSeeded: func() {
						if m != inproc.Off {
							if err := c.Settle(10 * time.Second); err != nil {
								b.Fatal(err)
							}
							before = stats(b, c)
						}
						b.ResetTimer()
					},
				})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if res.SeedFailures > 0 || res.Failed > 0 {
					b.Fatalf("%d seed failures, %d failed requests: %v %v", res.SeedFailures, res.Failed, res.Statuses, res.Errors)
				}
				b.ReportMetric(res.RPS, "req/s")
				b.ReportMetric(res.P50, "p50-us")
				b.ReportMetric(res.P99, "p99-us")
				if m != inproc.Off {
					if err := c.Settle(10 * time.Second); err != nil {
						b.Fatal(err)
					}
					d := stats(b, c).Sub(before)
					if res.Writes > 0 {
						b.ReportMetric(float64(d.BytesWire)/float64(res.Writes), "wire-B/write")
					}
					if d.Batches > 0 {
						b.ReportMetric(float64(d.Records)/float64(d.Batches), "records/batch")
					}
				}
			})
		}
	}
}

// BenchmarkWire measures replication bytes per write for a 4 KiB session,
// one client, buddy Sync (so every write travels in a batch of its own, the
// worst case for per-write overhead):
//
//   - delta: each write changes one small attribute; Tandem sends the delta.
//   - full-replace: each write replaces the whole 4 KiB of session content
//     (one attribute holding all of it, new digits every time), which is
//     what a store that ships whole sessions sends on every write.
//
// Metrics: wire-B/write and raw-B/write (BytesWire and BytesRaw per write,
// from Node.Stats), and for delta also full-copy-B, the computed wire size
// of a full copy of the same session (AppendBatch of a KindFull record,
// compressed with the default codec, sealed), and full/delta, their ratio.
func BenchmarkWire(b *testing.B) {
	session := sampleSession(b, sessionSize)
	c := startCluster(b, inproc.Sync)
	_, fullWire, err := loadgen.FullCopyWireSize(session, compress.Config{})
	if err != nil {
		b.Fatal(err)
	}
	// The whole session as one value, for full-replace.
	blob := ""
	for _, a := range session {
		blob += a.Key + "=" + a.Value + ";"
	}
	blob = blob[:min(len(blob), sessionSize-16)]

	for _, kind := range []string{"delta", "full-replace"} {
		b.Run(kind, func(b *testing.B) {
			u := newBrowser(c)
			if kind == "delta" {
				for _, a := range session {
					u.write(b, a.Key, a.Value)
				}
			} else {
				u.write(b, "all", blob)
			}
			if err := c.Settle(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			before := stats(b, c)
			b.ResetTimer()
			for i := range b.N {
				if kind == "delta" {
					u.write(b, "n", strconv.Itoa(i))
				} else {
					u.write(b, "all", loadgen.Vary(blob, int64(i)))
				}
			}
			b.StopTimer()
			if err := c.Settle(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			d := stats(b, c).Sub(before)
			b.ReportMetric(float64(d.BytesWire)/float64(b.N), "wire-B/write")
			b.ReportMetric(float64(d.BytesRaw)/float64(b.N), "raw-B/write")
			if kind == "delta" {
				b.ReportMetric(float64(fullWire), "full-copy-B")
				b.ReportMetric(float64(fullWire)/(float64(d.BytesWire)/float64(b.N)), "full/delta")
			}
		})
	}
}

// browser is one sequential client with a cookie jar, for the wire
// benchmark and the tests.
type browser struct {
	conns  map[string]*leanhttp.Conn
	c      *inproc.Cluster
	cookie map[string]string
	req    []byte
}

func newBrowser(c *inproc.Cluster) *browser {
	return &browser{conns: map[string]*leanhttp.Conn{}, c: c, cookie: map[string]string{}}
}

func (u *browser) get(tb testing.TB, target string) *leanhttp.Response {
	tb.Helper()
	addr := u.c.Nodes[0].HTTPAddr
	for _, n := range u.c.Nodes {
		if n.ID == u.cookie[nodeapp.RouteCookie] {
			addr = n.HTTPAddr
		}
	}
	conn := u.conns[addr]
	if conn == nil {
		conn = &leanhttp.Conn{Addr: addr}
		u.conns[addr] = conn
	}
	h := ""
	for k, v := range u.cookie {
		if h != "" {
			h += "; "
		}
		h += k + "=" + v
	}
	u.req = leanhttp.AppendGET(u.req[:0], addr, target, h)
	resp, err := conn.Do(u.req)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ck := range resp.Cookies {
		if ck.Delete {
			delete(u.cookie, ck.Name)
		} else {
			u.cookie[ck.Name] = ck.Value
		}
	}
	return resp
}

func (u *browser) write(tb testing.TB, k, v string) {
	tb.Helper()
	resp := u.get(tb, "/bench/write?k="+url.QueryEscape(k)+"&v="+url.QueryEscape(v))
	if resp.Status != 200 {
		tb.Fatalf("write %s: status %d: %s", k, resp.Status, resp.Body)
	}
}

// TestReplicationHarness runs the replication benchmark's machinery once,
// briefly, in Sync mode: every acknowledged write must still be in its
// session, and the nodes must have replicated something. It asserts
// behaviour, never timings. Set TANDEM_BENCH_LOG=1 to print the figures.
func TestReplicationHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	session := sampleSession(t, 1024)
	c := startCluster(t, inproc.Sync)
	before := stats(t, c)
	res, err := loadgen.Run(target(c), loadgen.Options{
		Clients: 4, Requests: 200, Duration: 20 * time.Second, WriteRatio: 0.8,
		Session: session, Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.SeedFailures > 0 || res.Failed > 0 || res.OK != 200 {
		t.Fatalf("seed failures %d, ok %d, failed %d: %v %v", res.SeedFailures, res.OK, res.Failed, res.Statuses, res.Errors)
	}
	v := res.Verify
	if v.Unreadable > 0 || v.LostWrites > 0 || v.SessionsLost > 0 || v.AckedWrites != res.Writes {
		t.Fatalf("verification: %+v, %d writes acknowledged", *v, res.Writes)
	}
	if err := c.Settle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	d := stats(t, c).Sub(before)
	if d.Records < uint64(res.Writes) || d.BytesWire == 0 {
		t.Fatalf("replicated %d records, %d bytes for %d writes", d.Records, d.BytesWire, res.Writes)
	}
	if os.Getenv("TANDEM_BENCH_LOG") != "" {
		t.Logf("%v; %d records, %d wire bytes", res, d.Records, d.BytesWire)
	}
}

// TestReplicationTable is BenchmarkReplication as a table: for each
// concurrency, the three variants run back to back for a fixed time, in
// interleaved rounds, and the test prints the mean req/s, p50 and p99 of
// each variant, its ratio to replication off, and the process's CPU time
// per request (nodes and clients together: on a CPU-bound machine the
// ratio of req/s follows it, and it moves less with the machine's other
// load). Interleaving spreads the noise of a shared machine over all
// variants alike. It runs only when
// TANDEM_BENCH_TABLE is set to the number of rounds:
//
//	TANDEM_BENCH_TABLE=3 go test -run ReplicationTable -v ./bench/
//
// TANDEM_BENCH_DURATION sets the time per variant and round (default 2s),
// TANDEM_BENCH_CLIENTS the concurrencies (default 1,16,64), and
// TANDEM_BENCH_CODEC and TANDEM_BENCH_LINGER the buddy's codec and
// AsyncLinger (default: buddy's defaults).
func TestReplicationTable(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("TANDEM_BENCH_TABLE"))
	if rounds <= 0 {
		t.Skip("set TANDEM_BENCH_TABLE=<rounds> to run")
	}
	dur := 2 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TANDEM_BENCH_DURATION")); err == nil && d > 0 {
		dur = d
	}
	session := sampleSession(t, sessionSize)
	clusters := map[inproc.Mode]*inproc.Cluster{}
	for _, m := range modes {
		clusters[m] = startCluster(t, m)
	}
	type cell struct {
		rps, p50, p99, wire, cpu float64
		perRound                 []float64 // req/s of each round
	}
	concurrency := []int{1, 16, 64}
	if v := os.Getenv("TANDEM_BENCH_CLIENTS"); v != "" {
		concurrency = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				t.Fatalf("TANDEM_BENCH_CLIENTS=%q: want a comma-separated list of client counts", v)
			}
			concurrency = append(concurrency, n)
		}
	}
	sums := map[int]map[inproc.Mode]*cell{}
	for _, c := range concurrency {
		sums[c] = map[inproc.Mode]*cell{}
		for _, m := range modes {
			sums[c][m] = &cell{}
		}
	}
	for round := range rounds {
		for _, clients := range concurrency {
			for _, m := range modes {
				c := clusters[m]
				var before inproc.Repl
				var cpu0, cpu1 time.Duration
				res, err := loadgen.Run(target(c), loadgen.Options{
					Clients: clients, Duration: dur, Warmup: 300 * time.Millisecond, WriteRatio: 1, Session: session,
					OnMeasure: func() { before, cpu0 = stats(t, c), processCPU(t) },
					OnDone:    func() { cpu1 = processCPU(t) },
				})
				if err != nil {
					t.Fatal(err)
				}
				if res.SeedFailures > 0 || res.Failed > 0 {
					t.Fatalf("c=%d %s: %d seed failures, %d failed: %v %v", clients, m, res.SeedFailures, res.Failed, res.Statuses, res.Errors)
				}
				s := sums[clients][m]
				s.rps += res.RPS / float64(rounds)
				s.perRound = append(s.perRound, res.RPS)
				s.p50 += res.P50 / float64(rounds)
				s.p99 += res.P99 / float64(rounds)
				if res.OK > 0 {
					s.cpu += float64((cpu1 - cpu0).Microseconds()) / float64(res.OK) / float64(rounds)
				}
				if m != inproc.Off && res.Writes > 0 {
					if err := c.Settle(10 * time.Second); err != nil {
						t.Fatal(err)
					}
					d := stats(t, c).Sub(before)
					s.wire += float64(d.BytesWire) / float64(res.Writes) / float64(rounds)
				}
				t.Logf("round %d c=%d %-5s %s", round+1, clients, m, res)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n2 nodes in one process, 4 KiB sessions, every request writes one small attribute; %d rounds of %v, means\n", rounds, dur)
	fmt.Fprintf(&b, "%-8s %-6s %9s %9s %15s %9s %9s %10s %10s\n", "clients", "mode", "req/s", "vs off", "per round", "p50 us", "p99 us", "wire B/wr", "CPU us/req")
	for _, clients := range concurrency {
		off := sums[clients][inproc.Off]
		for _, m := range modes {
			s := sums[clients][m]
			wire, rounds := "-", "-"
			if m != inproc.Off {
				wire = fmt.Sprintf("%.1f", s.wire)
				rounds = roundRatios(s.perRound, off.perRound)
			}
			fmt.Fprintf(&b, "%-8d %-6s %9.0f %8.0f%% %15s %9.0f %9.0f %10s %10.1f\n", clients, m, s.rps, 100*s.rps/off.rps, rounds, s.p50, s.p99, wire, s.cpu)
		}
	}
	fmt.Fprintf(&b, "per round: the median of the rounds' ratios to the same round's off, and their range\n")
	t.Log(b.String())
}

// processCPU returns the CPU time (user and system) this process has used:
// nodes and clients together, as they share the process.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// roundRatios formats the median and range of rps[i]/off[i] in percent.
func roundRatios(rps, off []float64) string {
	r := make([]float64, len(rps))
	for i := range rps {
		r[i] = 100 * rps[i] / off[i]
	}
	slices.Sort(r)
	med := r[len(r)/2]
	if len(r)%2 == 0 {
		med = (r[len(r)/2-1] + r[len(r)/2]) / 2
	}
	return fmt.Sprintf("%.0f%% %.0f-%.0f", med, r[0], r[len(r)-1])
}
