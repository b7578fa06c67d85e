// Package tandemotel reports Tandem's counters as OpenTelemetry metrics:
// asynchronous instruments whose one registered callback reads
// core.Manager.Stats and buddy.Node.Stats when the SDK collects. It starts
// no goroutine.
//
//	m, err := tandemotel.New(tandemotel.WithManager(mgr), tandemotel.WithNode(node))
//	if err != nil {
//		return err
//	}
//	defer m.Unregister()
//
// Without WithMeterProvider the metrics go to the global provider,
// otel.GetMeterProvider(): install your SDK's provider there (or pass it)
// before calling New. Names follow OpenTelemetry's conventions: dotted,
// units in the instrument's unit, no _total (exporters add what their
// format wants). The list, and how each maps to the Prometheus names of
// tandemprom, is in the README of this module.
//
// The OpenTelemetry API has no asynchronous histogram, so the replication
// latency, which the node keeps in power-of-two microsecond buckets, is
// reported as two counters: tandem.replication.latency.sum (seconds) and
// tandem.replication.latency.buckets, the cumulative count of batches at
// or below each bound, with the bound in seconds in the attribute le
// ("+Inf" counts every batch). Exported to Prometheus, the second works
// with histogram_quantile.
//
// This package lives in its own module, so that an application that does
// not use OpenTelemetry never compiles it.
package tandemotel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"

	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope (the meter's name) of every
// instrument.
const ScopeName = "github.com/tandemsession/tandem/tandemotel"

// Manager is what the metrics read from a session manager: *core.Manager
// implements it.
type Manager interface {
	Stats() core.Stats
}

// Node is what the metrics read from a cluster node: *buddy.Node
// implements it.
type Node interface {
	Stats() buddy.Stats
}

// Option configures New.
type Option func(*config)

type config struct {
	provider metric.MeterProvider
	manager  Manager
	node     Node
	attrs    []attribute.KeyValue
}

// WithMeterProvider sends the metrics to mp. Default: the global provider,
// otel.GetMeterProvider(), as it is when New is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.provider = mp }
}

// WithManager reports the session metrics of m (sessions owned, cookies
// rejected, sessions fetched and gone, 503s). Default: none.
func WithManager(m Manager) Option {
	return func(c *config) { c.manager = m }
}

// WithNode reports the replication and cluster metrics of n. Default:
// none (a single node without replication).
func WithNode(n Node) Option {
	return func(c *config) { c.node = n }
}

// WithAttributes adds attrs to every measurement, for instance to tell
// apart two nodes that one process runs. Default none. Per-process facts
// (service name, host) belong in the SDK's Resource instead.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// Metrics is the registration of Tandem's instruments with a meter.
type Metrics struct {
	reg metric.Registration
}

// Unregister stops the reports: the callback is removed from the meter.
// It is safe to call more than once.
func (m *Metrics) Unregister() error {
	if err := m.reg.Unregister(); err != nil {
		return fmt.Errorf("tandemotel: %w", err)
	}
	return nil
}

// gauge is an instrument read from a snapshot.
type gauge[S any] struct {
	inst  metric.Int64Observable
	value func(*S) int64
}

// instruments are the created instruments and the precomputed options of
// their measurements.
type instruments struct {
	manager []gauge[core.Stats]
	node    []gauge[buddy.Stats]

	latencySum     metric.Float64ObservableCounter
	latencyBuckets metric.Int64ObservableCounter
	rejected       metric.Int64ObservableCounter
	fetches        metric.Int64ObservableCounter
	peerState      metric.Int64ObservableGauge

	base    metric.MeasurementOption
	les     [32]metric.MeasurementOption // le attribute of each latency bucket
	attrs   []attribute.KeyValue
	known   map[string]metric.MeasurementOption // reason= / outcome= of the known keys
	all     []metric.Observable
	manSrc  Manager
	nodeSrc Node
}

// New creates Tandem's instruments on the meter ScopeName of the
// provider and registers one callback that reads the sources at every
// collection. At least one of WithManager and WithNode is required.
func New(opts ...Option) (*Metrics, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if isNil(cfg.manager) && isNil(cfg.node) {
		return nil, errors.New("tandemotel: WithManager or WithNode is required")
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetMeterProvider()
	}
	meter := cfg.provider.Meter(ScopeName)
	in := &instruments{attrs: cfg.attrs, base: metric.WithAttributeSet(attribute.NewSet(cfg.attrs...)), known: map[string]metric.MeasurementOption{}}
	var errs []error
	if !isNil(cfg.manager) {
		in.manSrc = cfg.manager
		in.manager = managerInstruments(meter, &errs)
	}
	if !isNil(cfg.node) {
		in.nodeSrc = cfg.node
		in.node = nodeInstruments(meter, &errs)
		in.nodeExtras(meter, &errs)
	}
	for _, g := range in.manager {
		in.all = append(in.all, g.inst)
	}
	for _, g := range in.node {
		in.all = append(in.all, g.inst)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("tandemotel: creating instruments: %w", err)
	}
	reg, err := meter.RegisterCallback(in.observe, in.all...)
	if err != nil {
		return nil, fmt.Errorf("tandemotel: registering the callback: %w", err)
	}
	return &Metrics{reg: reg}, nil
}

// newer creates one kind of asynchronous int64 instrument.
type newer func(name string, unit, desc string) metric.Int64Observable

func creators(meter metric.Meter, errs *[]error) (counter, upDown, gauge newer) {
	keep := func(o metric.Int64Observable, err error) metric.Int64Observable {
		if err != nil {
			*errs = append(*errs, err)
		}
		return o
	}
	counter = func(name, unit, desc string) metric.Int64Observable {
		return keep(meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc)))
	}
	upDown = func(name, unit, desc string) metric.Int64Observable {
		return keep(meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc)))
	}
	gauge = func(name, unit, desc string) metric.Int64Observable {
		return keep(meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc)))
	}
	return counter, upDown, gauge
}

func managerInstruments(meter metric.Meter, errs *[]error) []gauge[core.Stats] {
	counter, upDown, _ := creators(meter, errs)
	type g = gauge[core.Stats]
	return []g{
		{upDown("tandem.sessions", "{session}", "Sessions this node owns."), func(s *core.Stats) int64 { return int64(s.Sessions) }},
		{counter("tandem.commits", "{commit}", "Requests whose session changes this node committed (a session created, changed, regenerated or ended), whether or not a buddy acknowledged them."),
			func(s *core.Stats) int64 { return int64(s.Commits) }},
		{counter("tandem.cookies.rejected", "{cookie}", "Session cookies that failed to decode (tampered, expired, or sealed with keys this node does not hold); each became a fresh session."),
			func(s *core.Stats) int64 { return int64(s.CookiesRejected) }},
		{counter("tandem.sessions.fetched", "{session}", "Sessions brought to this node from another node."), func(s *core.Stats) int64 { return int64(s.Fetched) }},
		{counter("tandem.sessions.gone", "{session}", "Valid cookies whose session no node held any more; each became a fresh session."), func(s *core.Stats) int64 { return int64(s.Gone) }},
		{counter("tandem.unavailable", "{request}", "Requests answered 503 because the node holding their session did not hand it over in time."),
			func(s *core.Stats) int64 { return int64(s.Unavailable) }},
		{counter("tandem.sessions.evicted", "{session}", "First-visit sessions removed to make room for a new one when the node held Limits.MaxSessions."),
			func(s *core.Stats) int64 { return int64(s.Evicted) }},
	}
}

func nodeInstruments(meter metric.Meter, errs *[]error) []gauge[buddy.Stats] {
	counter, upDown, gaugeOf := creators(meter, errs)
	type g = gauge[buddy.Stats]
	u := func(f func(*buddy.Stats) uint64) func(*buddy.Stats) int64 {
		return func(s *buddy.Stats) int64 { return int64(f(s)) }
	}
	b := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	return []g{
		{upDown("tandem.backups", "{session}", "Backup copies this node holds for the owners it backs up."), func(s *buddy.Stats) int64 { return int64(s.Backups) }},
		{upDown("tandem.replication.queue", "{record}", "Records waiting to be sent to the buddy (in async mode, the changes a crash would lose)."),
			func(s *buddy.Stats) int64 { return int64(s.QueueDepth) }},
		{upDown("tandem.replication.resyncs", "{session}", "Sessions waiting to be resent to the buddy in full."), func(s *buddy.Stats) int64 { return int64(s.Resyncs) }},
		{gaugeOf("tandem.buddy.present", "", "1 when the node has a buddy holding its backups, 0 when it runs alone."), func(s *buddy.Stats) int64 { return b(s.Buddy != "") }},
		{gaugeOf("tandem.draining", "", "1 while the node stops gracefully and hands its sessions over."), func(s *buddy.Stats) int64 { return b(s.Draining) }},

		{counter("tandem.replication.sent.records", "{record}", "Records in batches the buddy acknowledged."), u(func(s *buddy.Stats) uint64 { return s.RecordsSent })},
		{counter("tandem.replication.sent.batches", "{batch}", "Batches the buddy acknowledged."), u(func(s *buddy.Stats) uint64 { return s.Batches })},
		{counter("tandem.replication.sent.raw_size", "By", "Bytes of replication batches before compression."), u(func(s *buddy.Stats) uint64 { return s.BytesRaw })},
		{counter("tandem.replication.sent.wire_size", "By", "Bytes of replication requests as sent: compressed and sealed."), u(func(s *buddy.Stats) uint64 { return s.BytesWire })},
		{counter("tandem.replication.acks", "{commit}", "Synchronous commits the buddy acknowledged."), u(func(s *buddy.Stats) uint64 { return s.Acks })},
		{counter("tandem.replication.degraded", "{commit}", "Synchronous commits served without a second copy: no other node acknowledged in time."), u(func(s *buddy.Stats) uint64 { return s.Degraded })},
		{counter("tandem.replication.degraded_alone", "{commit}", "Of the degraded commits, those made while no other node answered at all (the node alone, or cut off)."),
			u(func(s *buddy.Stats) uint64 { return s.DegradedAlone })},
		{counter("tandem.replication.queue.overflows", "{record}", "Changes not queued because the queue to the buddy was full (their sessions are resent in full)."),
			u(func(s *buddy.Stats) uint64 { return s.QueueOverflows })},
		{counter("tandem.replication.send_errors", "{batch}", "Replication batches that failed."), u(func(s *buddy.Stats) uint64 { return s.SendErrors })},
		{counter("tandem.replication.full_copies", "{session}", "Full session copies sent because the buddy reported a gap."), u(func(s *buddy.Stats) uint64 { return s.FullCopies })},
		{counter("tandem.backup.records.applied", "{record}", "Records applied to the backup copies this node holds."), u(func(s *buddy.Stats) uint64 { return s.RecordsApplied })},
		{counter("tandem.backup.records.ignored", "{record}", "Old or duplicate records this node ignored."), u(func(s *buddy.Stats) uint64 { return s.RecordsIgnored })},
		{counter("tandem.backup.records.fenced", "{record}", "Records refused because another node owns their session under a newer epoch."), u(func(s *buddy.Stats) uint64 { return s.RecordsFenced })},
		{counter("tandem.backup.gaps", "{record}", "Deltas that did not match the backup copy's version (a full copy was asked for)."), u(func(s *buddy.Stats) uint64 { return s.GapsReported })},
		{counter("tandem.backup.received.size", "By", "Bytes of replication requests received from the owners this node backs up."), u(func(s *buddy.Stats) uint64 { return s.BytesReceived })},
		{counter("tandem.backups.expired", "{session}", "Backup copies dropped because their session must have expired on its owner."), u(func(s *buddy.Stats) uint64 { return s.BackupsExpired })},
		{counter("tandem.backups.refused", "{session}", "New backup copies not taken because the node held Config.MaxBackups."), u(func(s *buddy.Stats) uint64 { return s.BackupsRefused })},
		{counter("tandem.backups.promoted", "{session}", "Backup copies taken over from a draining owner."), u(func(s *buddy.Stats) uint64 { return s.Promoted })},
		{counter("tandem.ring.changes", "{change}", "Membership changes that recomputed the buddy ring."), u(func(s *buddy.Stats) uint64 { return s.RingChanges })},
		{counter("tandem.failovers", "{session}", "Backup copies handed out, or taken over here, because their owner was gone."), u(func(s *buddy.Stats) uint64 { return s.Failovers })},
		{counter("tandem.sessions.handed_out", "{session}", "Fetches of other nodes that this node answered with a session."), u(func(s *buddy.Stats) uint64 { return s.HandedOut })},
		{counter("tandem.fetch.pending", "{fetch}", "Fetches of other nodes answered \"ask again\" because the session was busy here."), u(func(s *buddy.Stats) uint64 { return s.FetchPending })},
		{counter("tandem.ownership.moves", "{session}", "Owned sessions this node gave up to another node."), u(func(s *buddy.Stats) uint64 { return s.OwnershipMoves })},
		{counter("tandem.ownership.moves_refused", "{session}", "Handovers this node's buddy refused because it had handed its copy out already (it took this node for dead)."),
			u(func(s *buddy.Stats) uint64 { return s.MovesRefused })},
		{counter("tandem.sessions.fenced", "{session}", "Owned sessions dropped because another node owns them under a newer epoch."), u(func(s *buddy.Stats) uint64 { return s.FencedLocal })},
		{counter("tandem.pauses", "{pause}", "Times this process was found paused for longer than DeadAfter."), u(func(s *buddy.Stats) uint64 { return s.Pauses })},
		{counter("tandem.config.mismatches", "{peer}", "Peers found with other cookie keys or settings (each time one is found)."), u(func(s *buddy.Stats) uint64 { return s.ConfigMismatches })},
		{counter("tandem.transfer.sessions", "{session}", "Full session copies sent to a new buddy (state transfer)."), u(func(s *buddy.Stats) uint64 { return s.TransferSessions })},
		{counter("tandem.transfer.size", "By", "Raw bytes of the full session copies sent to a new buddy."), u(func(s *buddy.Stats) uint64 { return s.TransferBytes })},
		{counter("tandem.drains", "{drain}", "Graceful shutdowns of this node."), u(func(s *buddy.Stats) uint64 { return s.Drains })},
	}
}

// nodeExtras creates the instruments with attributes of their own.
func (in *instruments) nodeExtras(meter metric.Meter, errs *[]error) {
	keep := func(err error) {
		if err != nil {
			*errs = append(*errs, err)
		}
	}
	var err error
	in.latencySum, err = meter.Float64ObservableCounter("tandem.replication.latency.sum", metric.WithUnit("s"),
		metric.WithDescription("Sum of the round trips of acknowledged replication batches to the buddy."))
	keep(err)
	in.latencyBuckets, err = meter.Int64ObservableCounter("tandem.replication.latency.buckets", metric.WithUnit("{batch}"),
		metric.WithDescription("Acknowledged replication batches whose round trip took at most le seconds (cumulative; le=+Inf counts all)."))
	keep(err)
	in.rejected, err = meter.Int64ObservableCounter("tandem.replication.rejected", metric.WithUnit("{request}"),
		metric.WithDescription("Replication requests this node rejected, by reason."))
	keep(err)
	in.fetches, err = meter.Int64ObservableCounter("tandem.fetches", metric.WithUnit("{fetch}"),
		metric.WithDescription("Fetches of sessions for this node's requests, by outcome (where the session was found; none: nowhere; unavailable: a holder did not answer in time)."))
	keep(err)
	in.peerState, err = meter.Int64ObservableGauge("tandem.peer.state",
		metric.WithDescription("What this node believes of each peer: 1 for the peer's current state, 0 for the others."))
	keep(err)
	in.all = append(in.all, in.latencySum, in.latencyBuckets, in.rejected, in.fetches, in.peerState)
	for i := range in.les {
		le := "+Inf"
		if i < len(in.les)-1 {
			le = strconv.FormatFloat(float64(uint64(1)<<i)/1e6, 'g', -1, 64)
		}
		in.les[i] = in.with(attribute.String("le", le))
	}
	for _, r := range rejectReasons() {
		in.known["reason="+r] = in.with(attribute.String("reason", r))
	}
	for _, o := range fetchOutcomes() {
		in.known["outcome="+o] = in.with(attribute.String("outcome", o))
	}
}

// with is the measurement option of the WithAttributes attributes plus
// extra.
func (in *instruments) with(extra ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(slices.Clone(in.attrs), extra...)...))
}

// labeled returns the option for key=value, precomputed when known.
func (in *instruments) labeled(key, value string) metric.MeasurementOption {
	if o, ok := in.known[key+"="+value]; ok {
		return o
	}
	return in.with(attribute.String(key, value))
}

// observe is the one callback: it reads each source once and reports
// every instrument.
func (in *instruments) observe(_ context.Context, o metric.Observer) error {
	if in.manSrc != nil {
		st := in.manSrc.Stats()
		for _, g := range in.manager {
			o.ObserveInt64(g.inst, g.value(&st), in.base)
		}
	}
	if in.nodeSrc == nil {
		return nil
	}
	st := in.nodeSrc.Stats()
	for _, g := range in.node {
		o.ObserveInt64(g.inst, g.value(&st), in.base)
	}
	o.ObserveFloat64(in.latencySum, float64(st.Latency.Sum)/1e6, in.base)
	// Buckets[i] counts round trips below 2^i µs (the node truncates to
	// whole microseconds); the last one every round trip above 2^30 µs.
	var cum uint64
	for i, n := range st.Latency.Buckets {
		cum += n
		o.ObserveInt64(in.latencyBuckets, int64(cum), in.les[i])
	}
	for _, r := range withKnown(st.Rejected, rejectReasons()) {
		o.ObserveInt64(in.rejected, int64(st.Rejected[r]), in.labeled("reason", r))
	}
	for _, f := range withKnown(st.Fetches, fetchOutcomes()) {
		o.ObserveInt64(in.fetches, int64(st.Fetches[f]), in.labeled("outcome", f))
	}
	for _, p := range st.Peers {
		if p.ID == st.ID {
			continue
		}
		for s := buddy.Unknown; s <= buddy.Left; s++ {
			v := int64(0)
			if p.State == s {
				v = 1
			}
			o.ObserveInt64(in.peerState, v, in.with(attribute.String("peer", p.ID), attribute.String("state", s.String())))
		}
	}
	return nil
}

// rejectReasons are the reasons that are always reported, at 0 until
// they happen, so that a rate over them works from the start. A reason a
// newer buddy package reports is reported too, from the first time it is
// counted.
func rejectReasons() []string {
	return []string{
		buddy.RejectTooLarge, buddy.RejectAuth, buddy.RejectReplay, buddy.RejectUnknown, buddy.RejectMalformed,
		buddy.RejectVersion, buddy.RejectBomb, buddy.RejectMethod, buddy.RejectStale,
	}
}

// fetchOutcomes are the fetch outcomes that are always reported, as
// rejectReasons are.
func fetchOutcomes() []string {
	return []string{
		buddy.SourceOwner, buddy.SourceBackup, buddy.SourceOwnersBuddy, buddy.SourceLocal,
		buddy.SourceScan, buddy.SourceNone, buddy.SourceUnavailable,
	}
}

// withKnown returns known followed by the other keys of m, sorted.
func withKnown(m map[string]uint64, known []string) []string {
	out := slices.Clone(known)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			out = append(out, k)
		}
	}
	return out
}

// isNil reports whether v is nil or a nil pointer in an interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
