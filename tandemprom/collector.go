// Package tandemprom exports Tandem's counters to Prometheus: a
// prometheus.Collector that reads core.Manager.Stats and buddy.Node.Stats
// when it is scraped. It starts no goroutine and touches no global
// registry; register it where you want it:
//
//	reg := prometheus.NewRegistry()
//	c, err := tandemprom.New(tandemprom.Options{Manager: m, Node: node})
//	if err != nil {
//		return err
//	}
//	reg.MustRegister(c)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every metric is named tandem_... (Options.Namespace changes the prefix);
// counters end in _total, and units are in the names (_seconds, _bytes).
// The replication latency, kept by the node in power-of-two microsecond
// buckets, is exported as a Prometheus histogram in seconds. The list of
// metrics, with the query each dashboard panel runs, is in the README of
// this module.
//
// This package lives in its own module, so that an application that does
// not use Prometheus never compiles client_golang.
package tandemprom

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
)

// Manager is what the collector reads from a session manager:
// *core.Manager implements it.
type Manager interface {
	Stats() core.Stats
}

// Node is what the collector reads from a cluster node: *buddy.Node
// implements it.
type Node interface {
	Stats() buddy.Stats
}

// Options configures a Collector. At least one of Manager and Node is
// required.
type Options struct {
	// Manager, when set, is read for the session metrics (sessions owned,
	// commits, cookies rejected, sessions fetched, gone and evicted, 503s). Default nil: none
	// of them.
	Manager Manager
	// Node, when set, is read for the replication and cluster metrics.
	// Default nil: none of them (a single node without replication).
	Node Node
	// Namespace is the first part of every metric name. Default "tandem".
	Namespace string
	// ConstLabels are added to every metric, for instance to tell apart
	// two nodes that one process runs. Default none. They must not use
	// the collector's own label names: id, mode, peer, state, reason,
	// outcome (New fails if they do).
	ConstLabels prometheus.Labels
}

// Collector is a prometheus.Collector of one manager's and one node's
// counters. It reads them on every Collect; it is safe for concurrent
// use.
type Collector struct {
	manager Manager
	node    Node

	managerGauges, managerCounters []metric[core.Stats]
	nodeGauges, nodeCounters       []metric[buddy.Stats]

	info, latency, batchRecords *prometheus.Desc
	rejected, fetches, peer     *prometheus.Desc
}

// metric is one gauge or counter read from a stats snapshot.
type metric[S any] struct {
	desc  *prometheus.Desc
	value func(*S) float64
}

// New returns a collector of opts.Manager and opts.Node. It fails when
// both are nil or when a metric cannot be described with
// opts.ConstLabels.
func New(opts Options) (*Collector, error) {
	if isNil(opts.Manager) && isNil(opts.Node) {
		return nil, errors.New("tandemprom: Options.Manager or Options.Node is required")
	}
	ns := opts.Namespace
	if ns == "" {
		ns = "tandem"
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, labels, opts.ConstLabels)
	}
	c := &Collector{}
	if !isNil(opts.Manager) {
		c.manager = opts.Manager
		c.managerGauges = []metric[core.Stats]{
			{desc("sessions", "Sessions this node owns."), func(s *core.Stats) float64 { return float64(s.Sessions) }},
		}
		c.managerCounters = []metric[core.Stats]{
			{desc("commits_total", "Requests whose session changes this node committed (a session created, changed, regenerated or ended), whether or not a buddy acknowledged them."),
				func(s *core.Stats) float64 { return float64(s.Commits) }},
			{desc("cookies_rejected_total", "Session cookies that failed to decode (tampered, expired, or sealed with keys this node does not hold); each became a fresh session."),
				func(s *core.Stats) float64 { return float64(s.CookiesRejected) }},
			{desc("sessions_fetched_total", "Sessions brought to this node from another node."),
				func(s *core.Stats) float64 { return float64(s.Fetched) }},
			{desc("sessions_gone_total", "Valid cookies whose session no node held any more (expired, ended, or lost with both copies); each became a fresh session."),
				func(s *core.Stats) float64 { return float64(s.Gone) }},
			{desc("unavailable_total", "Requests answered 503 because the node holding their session did not hand it over in time."),
				func(s *core.Stats) float64 { return float64(s.Unavailable) }},
			{desc("sessions_evicted_total", "First-visit sessions removed to make room for a new one when the node held Limits.MaxSessions."),
				func(s *core.Stats) float64 { return float64(s.Evicted) }},
		}
	}
	if !isNil(opts.Node) {
		c.node = opts.Node
		c.initNode(desc)
	}
	// Registering with a throwaway registry reports what Describe's
	// descriptors got wrong (bad or clashing ConstLabels) now rather than
	// at the caller's Register.
	if err := prometheus.NewPedanticRegistry().Register(c); err != nil {
		return nil, fmt.Errorf("tandemprom: %w", err)
	}
	return c, nil
}

func (c *Collector) initNode(desc func(name, help string, labels ...string) *prometheus.Desc) {
	type m = metric[buddy.Stats]
	u := func(f func(*buddy.Stats) uint64) func(*buddy.Stats) float64 {
		return func(s *buddy.Stats) float64 { return float64(f(s)) }
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	c.nodeGauges = []m{
		{desc("backups", "Backup copies this node holds for the owners it backs up."),
			func(s *buddy.Stats) float64 { return float64(s.Backups) }},
		{desc("replication_queue_records", "Records waiting to be sent to the buddy (in async mode, the changes a crash would lose)."),
			func(s *buddy.Stats) float64 { return float64(s.QueueDepth) }},
		{desc("replication_resync_sessions", "Sessions waiting to be resent to the buddy in full."),
			func(s *buddy.Stats) float64 { return float64(s.Resyncs) }},
		{desc("has_buddy", "1 when the node has a buddy holding its backups, 0 when it runs alone."),
			func(s *buddy.Stats) float64 { return b(s.Buddy != "") }},
		{desc("draining", "1 while the node stops gracefully and hands its sessions over."),
			func(s *buddy.Stats) float64 { return b(s.Draining) }},
	}
	c.nodeCounters = []m{
		{desc("replication_records_sent_total", "Records in batches the buddy acknowledged."), u(func(s *buddy.Stats) uint64 { return s.RecordsSent })},
		{desc("replication_batches_total", "Batches the buddy acknowledged."), u(func(s *buddy.Stats) uint64 { return s.Batches })},
		{desc("replication_acks_total", "Synchronous commits the buddy acknowledged."), u(func(s *buddy.Stats) uint64 { return s.Acks })},
		{desc("replication_degraded_commits_total", "Synchronous commits served without a second copy: no other node acknowledged in time."), u(func(s *buddy.Stats) uint64 { return s.Degraded })},
		{desc("replication_degraded_alone_commits_total", "Of the degraded commits, those made while no other node answered at all (the node alone, or cut off)."), u(func(s *buddy.Stats) uint64 { return s.DegradedAlone })},
		{desc("replication_raw_bytes_total", "Bytes of replication batches before compression."), u(func(s *buddy.Stats) uint64 { return s.BytesRaw })},
		{desc("replication_wire_bytes_total", "Bytes of replication requests as sent: compressed and sealed."), u(func(s *buddy.Stats) uint64 { return s.BytesWire })},
		{desc("replication_queue_overflows_total", "Changes not queued because the queue to the buddy was full (their sessions are resent in full)."), u(func(s *buddy.Stats) uint64 { return s.QueueOverflows })},
		{desc("replication_send_errors_total", "Replication batches that failed."), u(func(s *buddy.Stats) uint64 { return s.SendErrors })},
		{desc("replication_full_copies_total", "Full session copies sent because the buddy reported a gap."), u(func(s *buddy.Stats) uint64 { return s.FullCopies })},
		{desc("backup_records_applied_total", "Records applied to the backup copies this node holds."), u(func(s *buddy.Stats) uint64 { return s.RecordsApplied })},
		{desc("backup_records_ignored_total", "Old or duplicate records this node ignored."), u(func(s *buddy.Stats) uint64 { return s.RecordsIgnored })},
		{desc("backup_gaps_total", "Deltas that did not match the backup copy's version (a full copy was asked for)."), u(func(s *buddy.Stats) uint64 { return s.GapsReported })},
		{desc("backup_records_fenced_total", "Records refused because another node owns their session under a newer epoch."), u(func(s *buddy.Stats) uint64 { return s.RecordsFenced })},
		{desc("backup_received_bytes_total", "Bytes of replication requests received from the owners this node backs up."), u(func(s *buddy.Stats) uint64 { return s.BytesReceived })},
		{desc("backups_refused_total", "New backup copies not taken because the node held Config.MaxBackups."), u(func(s *buddy.Stats) uint64 { return s.BackupsRefused })},
		{desc("backups_expired_total", "Backup copies dropped because their session must have expired on its owner."), u(func(s *buddy.Stats) uint64 { return s.BackupsExpired })},
		{desc("ring_changes_total", "Membership changes that recomputed the buddy ring."), u(func(s *buddy.Stats) uint64 { return s.RingChanges })},
		{desc("failovers_total", "Backup copies handed out, or taken over here, because their owner was gone."), u(func(s *buddy.Stats) uint64 { return s.Failovers })},
		{desc("sessions_handed_out_total", "Fetches of other nodes that this node answered with a session."), u(func(s *buddy.Stats) uint64 { return s.HandedOut })},
		{desc("fetch_pending_total", "Fetches of other nodes answered \"ask again\" because the session was busy here."), u(func(s *buddy.Stats) uint64 { return s.FetchPending })},
		{desc("ownership_moves_total", "Owned sessions this node gave up to another node."), u(func(s *buddy.Stats) uint64 { return s.OwnershipMoves })},
		{desc("ownership_moves_refused_total", "Handovers this node's buddy refused because it had handed its copy out already (it took this node for dead)."), u(func(s *buddy.Stats) uint64 { return s.MovesRefused })},
		{desc("sessions_fenced_total", "Owned sessions dropped because another node owns them under a newer epoch."), u(func(s *buddy.Stats) uint64 { return s.FencedLocal })},
		{desc("pauses_total", "Times this process was found paused for longer than DeadAfter."), u(func(s *buddy.Stats) uint64 { return s.Pauses })},
		{desc("config_mismatches_total", "Peers found with other cookie keys or settings (each time one is found)."), u(func(s *buddy.Stats) uint64 { return s.ConfigMismatches })},
		{desc("backups_promoted_total", "Backup copies taken over from a draining owner."), u(func(s *buddy.Stats) uint64 { return s.Promoted })},
		{desc("transfer_sessions_total", "Full session copies sent to a new buddy (state transfer)."), u(func(s *buddy.Stats) uint64 { return s.TransferSessions })},
		{desc("transfer_bytes_total", "Raw bytes of the full session copies sent to a new buddy."), u(func(s *buddy.Stats) uint64 { return s.TransferBytes })},
		{desc("drains_total", "Graceful shutdowns of this node."), u(func(s *buddy.Stats) uint64 { return s.Drains })},
	}
	c.info = desc("node_info", "The node's ID and replication mode; always 1.", "id", "mode")
	c.latency = desc("replication_latency_seconds", "Round trip of an acknowledged replication batch to the buddy.")
	c.batchRecords = desc("replication_batch_records", "Records per acknowledged replication batch.")
	c.rejected = desc("replication_rejected_total", "Replication requests this node rejected, by reason.", "reason")
	c.fetches = desc("fetches_total", "Fetches of sessions for this node's requests, by outcome (where the session was found; none: nowhere; unavailable: a holder did not answer in time).", "outcome")
	c.peer = desc("peer_state", "What this node believes of each peer: 1 for the peer's current state, 0 for the others.", "peer", "state")
}

// Describe sends the descriptors of every metric the collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.managerGauges {
		ch <- m.desc
	}
	for _, m := range c.managerCounters {
		ch <- m.desc
	}
	if c.node == nil {
		return
	}
	for _, m := range c.nodeGauges {
		ch <- m.desc
	}
	for _, m := range c.nodeCounters {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{c.info, c.latency, c.batchRecords, c.rejected, c.fetches, c.peer} {
		ch <- d
	}
}

// Collect reads the manager's and the node's counters and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.manager != nil {
		st := c.manager.Stats()
		for _, m := range c.managerGauges {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, m.value(&st))
		}
		for _, m := range c.managerCounters {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.value(&st))
		}
	}
	if c.node == nil {
		return
	}
	st := c.node.Stats()
	for _, m := range c.nodeGauges {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, m.value(&st))
	}
	for _, m := range c.nodeCounters {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.value(&st))
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, st.ID, st.Mode)
	ch <- histogram(c.latency, st.Latency, latencyBound, 1e-6) // the node sums microseconds
	ch <- histogram(c.batchRecords, st.BatchSizes, countBound, 1)
	for _, reason := range withKnown(st.Rejected, rejectReasons()) {
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(st.Rejected[reason]), reason)
	}
	for _, outcome := range withKnown(st.Fetches, fetchOutcomes()) {
		ch <- prometheus.MustNewConstMetric(c.fetches, prometheus.CounterValue, float64(st.Fetches[outcome]), outcome)
	}
	for _, p := range st.Peers {
		if p.ID == st.ID {
			continue
		}
		for s := buddy.Unknown; s <= buddy.Left; s++ {
			v := 0.0
			if p.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.peer, prometheus.GaugeValue, v, p.ID, s.String())
		}
	}
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

// histogram converts a buddy.Histogram to a Prometheus histogram.
// buddy.Histogram.Buckets[i] counts values v with 2^(i-1) <= v < 2^i
// (Buckets[0]: v = 0; Buckets[31]: every v >= 2^30), so the cumulative
// count of Buckets[0..i] is the number of values below 2^i: bound(i) gives
// the Prometheus upper bound of that count. The last bucket becomes +Inf.
// The count is the sum of the buckets rather than Histogram.Count: the
// node's snapshot reads its atomics one by one, and a histogram whose
// buckets exceed its count is invalid. The sum is scaled by scale.
func histogram(d *prometheus.Desc, h buddy.Histogram, bound func(i int) float64, scale float64) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Buckets)-1)
	var cum uint64
	for i, n := range h.Buckets {
		cum += n
		if i < len(h.Buckets)-1 {
			buckets[bound(i)] = cum
		}
	}
	return prometheus.MustNewConstHistogram(d, cum, float64(h.Sum)*scale, buckets)
}

// latencyBound: the node measures latency as a time.Duration truncated to
// whole microseconds, so a value below 2^i µs is a duration below 2^i µs:
// the bound is 2^i µs, in seconds.
func latencyBound(i int) float64 { return float64(uint64(1)<<i) / 1e6 }

// countBound: a whole number below 2^i is at most 2^i - 1.
func countBound(i int) float64 { return float64(uint64(1)<<i - 1) }

// isNil reports whether v is nil or a nil pointer in an interface (a nil
// *core.Manager passed as Options.Manager).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
