package tandemotel_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/tandemotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeManager core.Stats

func (f fakeManager) Stats() core.Stats { return core.Stats(f) }

type fakeNode struct{ st buddy.Stats }

func (f *fakeNode) Stats() buddy.Stats { return f.st }

func fixedNode() *fakeNode {
	var lat buddy.Histogram
	for _, v := range []uint64{0, 3, 900, 1500, 1 << 31} {
		lat.Count++
		lat.Sum += v
		i := 0
		for i < 31 && v >= 1<<i {
			i++
		}
		lat.Buckets[i]++
	}
	return &fakeNode{buddy.Stats{
		ID: "n1", Buddy: "n2", Mode: "sync", RecordsSent: 100, BytesRaw: 2000, BytesWire: 500, Batches: 5,
		Acks: 90, Degraded: 2, Latency: lat, QueueDepth: 3, Backups: 40,
		Rejected: map[string]uint64{buddy.RejectAuth: 4, "from_the_future": 1},
		Fetches:  map[string]uint64{buddy.SourceBackup: 6},
		Peers: []buddy.PeerStatus{
			{Peer: buddy.Peer{ID: "n1"}, State: buddy.Alive},
			{Peer: buddy.Peer{ID: "n2"}, State: buddy.Dead},
		},
		Failovers: 7, TransferBytes: 8, DegradedAlone: 9, BackupsRefused: 10, MovesRefused: 11,
	}}
}

// collect reads everything reader has.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != tandemotel.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func newReader(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return reader, mp
}

func sum(name, desc, unit string, monotonic bool, points ...metricdata.DataPoint[int64]) metricdata.Metrics {
	return metricdata.Metrics{Name: name, Description: desc, Unit: unit, Data: metricdata.Sum[int64]{
		Temporality: metricdata.CumulativeTemporality, IsMonotonic: monotonic, DataPoints: points,
	}}
}

func point(v int64, attrs ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(attrs...), Value: v}
}

func TestFixedStats(t *testing.T) {
	reader, mp := newReader(t)
	node := attribute.String("tandem.node", "n1")
	m, err := tandemotel.New(tandemotel.WithMeterProvider(mp), tandemotel.WithAttributes(node),
		tandemotel.WithManager(fakeManager{Sessions: 42, CookiesRejected: 3, Unavailable: 1, Commits: 12, Evicted: 13}), tandemotel.WithNode(fixedNode()))
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, reader)
	opts := []metricdatatest.Option{metricdatatest.IgnoreTimestamp()}
	for _, want := range []metricdata.Metrics{
		sum("tandem.sessions", "Sessions this node owns.", "{session}", false, point(42, node)),
		sum("tandem.cookies.rejected", "Session cookies that failed to decode (tampered, expired, or sealed with keys this node does not hold); each became a fresh session.",
			"{cookie}", true, point(3, node)),
		sum("tandem.unavailable", "Requests answered 503 because the node holding their session did not hand it over in time.", "{request}", true, point(1, node)),
		sum("tandem.commits", "Requests whose session changes this node committed (a session created, changed, regenerated or ended), whether or not a buddy acknowledged them.",
			"{commit}", true, point(12, node)),
		sum("tandem.sessions.evicted", "First-visit sessions removed to make room for a new one when the node held Limits.MaxSessions.", "{session}", true, point(13, node)),
		sum("tandem.replication.degraded_alone", "Of the degraded commits, those made while no other node answered at all (the node alone, or cut off).",
			"{commit}", true, point(9, node)),
		sum("tandem.backups.refused", "New backup copies not taken because the node held Config.MaxBackups.", "{session}", true, point(10, node)),
		sum("tandem.ownership.moves_refused", "Handovers this node's buddy refused because it had handed its copy out already (it took this node for dead).",
			"{session}", true, point(11, node)),
		sum("tandem.backups", "Backup copies this node holds for the owners it backs up.", "{session}", false, point(40, node)),
		sum("tandem.replication.acks", "Synchronous commits the buddy acknowledged.", "{commit}", true, point(90, node)),
		sum("tandem.replication.degraded", "Synchronous commits served without a second copy: no other node acknowledged in time.", "{commit}", true, point(2, node)),
		sum("tandem.replication.sent.wire_size", "Bytes of replication requests as sent: compressed and sealed.", "By", true, point(500, node)),
		sum("tandem.failovers", "Backup copies handed out, or taken over here, because their owner was gone.", "{session}", true, point(7, node)),
		{Name: "tandem.buddy.present", Description: "1 when the node has a buddy holding its backups, 0 when it runs alone.",
			Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{point(1, node)}}},
		{Name: "tandem.replication.latency.sum", Description: "Sum of the round trips of acknowledged replication batches to the buddy.", Unit: "s",
			Data: metricdata.Sum[float64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
				DataPoints: []metricdata.DataPoint[float64]{{Attributes: attribute.NewSet(node), Value: float64(0+3+900+1500+(1<<31)) / 1e6}}}},
	} {
		metricdatatest.AssertEqual(t, want, got[want.Name], opts...)
	}

	// Labeled counters: every known reason and outcome, and the unknown
	// ones too.
	values := func(name, key string) map[string]int64 {
		out := map[string]int64{}
		for _, dp := range got[name].Data.(metricdata.Sum[int64]).DataPoints {
			v, _ := dp.Attributes.Value(attribute.Key(key))
			if n, _ := dp.Attributes.Value("tandem.node"); n.AsString() != "n1" {
				t.Errorf("%s: point without the node attribute: %v", name, dp.Attributes)
			}
			out[v.String()] = dp.Value
		}
		return out
	}
	rejected := values("tandem.replication.rejected", "reason")
	if len(rejected) != 10 || rejected[buddy.RejectAuth] != 4 || rejected["from_the_future"] != 1 || rejected[buddy.RejectReplay] != 0 {
		t.Errorf("rejected %v", rejected)
	}
	fetches := values("tandem.fetches", "outcome")
	if len(fetches) != 7 || fetches[buddy.SourceBackup] != 6 {
		t.Errorf("fetches %v", fetches)
	}
	buckets := values("tandem.replication.latency.buckets", "le")
	for le, want := range map[string]int64{"1e-06": 1, "4e-06": 2, "0.000512": 2, "0.001024": 3, "0.002048": 4, "1073.741824": 4, "+Inf": 5} {
		if buckets[le] != want {
			t.Errorf("le=%s: %d, want %d (all: %v)", le, buckets[le], want, buckets)
		}
	}
	if len(buckets) != 32 {
		t.Errorf("%d buckets, want 32", len(buckets))
	}

	// Peer states: n1 is this node, n2 dead.
	states := map[string]int64{}
	for _, dp := range got["tandem.peer.state"].Data.(metricdata.Gauge[int64]).DataPoints {
		p, _ := dp.Attributes.Value("peer")
		s, _ := dp.Attributes.Value("state")
		states[p.AsString()+"/"+s.AsString()] = dp.Value
	}
	if len(states) != 6 || states["n2/dead"] != 1 || states["n2/alive"] != 0 {
		t.Errorf("peer states %v", states)
	}

	// Unregister stops the reports.
	if err := m.Unregister(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unregister(); err != nil {
		t.Fatalf("second Unregister: %v", err)
	}
	if got := collect(t, reader); len(got) != 0 {
		t.Fatalf("%d metrics after Unregister", len(got))
	}
}

// Without WithMeterProvider, New uses the global provider.
func TestGlobalProvider(t *testing.T) {
	reader, mp := newReader(t)
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(mp)
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	m, err := tandemotel.New(tandemotel.WithManager(fakeManager{Sessions: 7}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unregister()
	got := collect(t, reader)
	if len(got) != 7 {
		t.Errorf("%d metrics from a manager alone, want 7", len(got))
	}
	if v := got["tandem.sessions"].Data.(metricdata.Sum[int64]).DataPoints[0].Value; v != 7 {
		t.Fatalf("tandem.sessions %d", v)
	}
}

func TestNewErrors(t *testing.T) {
	var nilManager *core.Manager
	for name, opts := range map[string][]tandemotel.Option{
		"nothing":     nil,
		"nil pointer": {tandemotel.WithManager(nilManager)},
	} {
		if m, err := tandemotel.New(opts...); err == nil || !strings.HasPrefix(err.Error(), "tandemotel: ") {
			t.Errorf("%s: New = %v, %v", name, m, err)
		}
	}
}
