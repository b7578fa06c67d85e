package tandemprom_test

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/tandemprom"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite testdata/exposition.prom")

type fakeManager core.Stats

func (f fakeManager) Stats() core.Stats { return core.Stats(f) }

type fakeNode struct{ st buddy.Stats }

func (f *fakeNode) Stats() buddy.Stats { return f.st }

// fixedStats gives every counter a distinct value, so that the golden
// exposition shows which field feeds which metric.
func fixedStats() (fakeManager, *fakeNode) {
	m := fakeManager{Sessions: 42, CookiesRejected: 3, Fetched: 7, Gone: 2, Unavailable: 1, Commits: 34, Evicted: 35}
	var lat, sizes buddy.Histogram
	for _, v := range []uint64{0, 1, 3, 900, 1000, 1500, 40_000, 1 << 31} { // microseconds
		lat.Count++
		lat.Sum += v
		lat.Buckets[bucket(v)]++
	}
	for _, v := range []uint64{1, 1, 2, 7, 8, 1024} { // records
		sizes.Count++
		sizes.Sum += v
		sizes.Buckets[bucket(v)]++
	}
	n := &fakeNode{buddy.Stats{
		ID: "n1", Buddy: "n2", Mode: "sync",
		RecordsSent: 100, BytesRaw: 20_000, BytesWire: 5_000, Batches: 8, BatchSizes: sizes, Acks: 90,
		Latency: lat, QueueDepth: 4, QueueOverflows: 5, SendErrors: 6, Degraded: 9, FullCopies: 10, Resyncs: 11,
		Backups: 40, RecordsApplied: 12, RecordsIgnored: 13, GapsReported: 14, RecordsFenced: 15, BytesReceived: 16,
		Rejected:       map[string]uint64{buddy.RejectAuth: 17, "from_the_future": 18},
		BackupsExpired: 19,
		Peers: []buddy.PeerStatus{
			{Peer: buddy.Peer{ID: "n1"}, State: buddy.Alive},
			{Peer: buddy.Peer{ID: "n2"}, State: buddy.Alive},
			{Peer: buddy.Peer{ID: "n3"}, State: buddy.Dead},
		},
		Draining: false, RingChanges: 20, Failovers: 21,
		Fetches:   map[string]uint64{buddy.SourceBackup: 22, buddy.SourceUnavailable: 23},
		HandedOut: 24, FetchPending: 25, OwnershipMoves: 26, FencedLocal: 27, Pauses: 28, ConfigMismatches: 29,
		Promoted: 30, TransferSessions: 31, TransferBytes: 32, Drains: 33,
		DegradedAlone: 36, BackupsRefused: 37, MovesRefused: 38,
	}}
	return m, n
}

// bucket is buddy's bucket index for v.
func bucket(v uint64) int {
	i := 0
	for i < 31 && v >= 1<<i {
		i++
	}
	return i
}

// The full exposition of fixed counters, against testdata/exposition.prom
// (go test -update rewrites it after a deliberate change).
func TestExposition(t *testing.T) {
	m, n := fixedStats()
	c, err := tandemprom.New(tandemprom.Options{Manager: m, Node: n, ConstLabels: prometheus.Labels{"cluster": "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "exposition.prom")
	if *update {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(c, bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// The power-of-two microsecond buckets become cumulative buckets in
// seconds; a value of exactly 2^i µs counts in the bucket above le=2^i µs
// only, as the node measured it.
func TestLatencyHistogram(t *testing.T) {
	_, n := fixedStats()
	c, err := tandemprom.New(tandemprom.Options{Node: n})
	if err != nil {
		t.Fatal(err)
	}
	h := gatherOne(t, c, "tandem_replication_latency_seconds").GetHistogram()
	if h.GetSampleCount() != 8 {
		t.Fatalf("count %d, want 8", h.GetSampleCount())
	}
	wantSum := float64(0+1+3+900+1000+1500+40_000+(1<<31)) / 1e6
	if math.Abs(h.GetSampleSum()-wantSum) > 1e-9 {
		t.Fatalf("sum %v, want %v", h.GetSampleSum(), wantSum)
	}
	cum := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if len(cum) != 31 {
		t.Fatalf("%d buckets, want 31 (and +Inf)", len(cum))
	}
	for le, want := range map[float64]uint64{
		1e-6:                 1, // 0 µs
		2e-6:                 2, // + 1 µs
		4e-6:                 3, // + 3 µs
		512e-6:               3,
		1024e-6:              5, // + 900, 1000 µs
		2048e-6:              6, // + 1500 µs
		65536e-6:             7, // + 40 ms
		float64(1<<30) / 1e6: 7, // 2^31 µs lies above every finite bound
	} {
		if cum[le] != want {
			t.Errorf("le=%g: %d, want %d", le, cum[le], want)
		}
	}
	// Integer counts: le = 2^i - 1 exactly.
	sizes := gatherOne(t, c, "tandem_replication_batch_records").GetHistogram()
	for _, b := range sizes.GetBucket() {
		switch b.GetUpperBound() {
		case 1:
			assertCount(t, b, 2)
		case 3:
			assertCount(t, b, 3)
		case 7:
			assertCount(t, b, 4)
		case 15:
			assertCount(t, b, 5)
		case 1023:
			assertCount(t, b, 5)
		case 2047:
			assertCount(t, b, 6)
		}
	}
}

func assertCount(t *testing.T, b *dto.Bucket, want uint64) {
	t.Helper()
	if b.GetCumulativeCount() != want {
		t.Errorf("le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
	}
}

// The node's snapshot reads count and buckets one after the other: the
// exported count follows the buckets, so the histogram stays valid.
func TestHistogramCountFollowsBuckets(t *testing.T) {
	_, n := fixedStats()
	n.st.Latency.Count = 3 // as if observations landed between the loads
	c, err := tandemprom.New(tandemprom.Options{Node: n})
	if err != nil {
		t.Fatal(err)
	}
	if got := gatherOne(t, c, "tandem_replication_latency_seconds").GetHistogram().GetSampleCount(); got != 8 {
		t.Fatalf("count %d, want the buckets' 8", got)
	}
}

func TestNewErrors(t *testing.T) {
	var nilManager *core.Manager
	var nilNode *buddy.Node
	for name, opts := range map[string]tandemprom.Options{
		"nothing":            {},
		"nil pointers":       {Manager: nilManager, Node: nilNode},
		"clashing label":     {Node: &fakeNode{}, ConstLabels: prometheus.Labels{"peer": "x"}},
		"invalid label name": {Manager: fakeManager{}, ConstLabels: prometheus.Labels{"__reserved": "x"}},
	} {
		if c, err := tandemprom.New(opts); err == nil || !strings.HasPrefix(err.Error(), "tandemprom: ") {
			t.Errorf("%s: New = %v, %v; want a tandemprom error", name, c, err)
		}
	}
	// A manager alone exports only the session metrics.
	c, err := tandemprom.New(tandemprom.Options{Manager: fakeManager{Sessions: 2}, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 7 {
		t.Fatalf("%d metrics from a manager alone, want 7", n)
	}
	if v := gatherOne(t, c, "shop_sessions").GetGauge().GetValue(); v != 2 {
		t.Fatalf("shop_sessions %v", v)
	}
}

// gatherOne returns the one metric named name that c exports.
func gatherOne(t *testing.T, c prometheus.Collector, name string) *dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if len(mf.GetMetric()) != 1 {
				t.Fatalf("%s: %d metrics", name, len(mf.GetMetric()))
			}
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
