package buddy

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a node's counters, for dashboards and exporters.
// Counters only grow; gauges (QueueDepth, Backups, ...) are current values.
type Stats struct {
	ID    string
	Buddy string // "" when the node runs alone
	Mode  string

	// Sent to the buddy.
	RecordsSent    uint64 // records in acknowledged batches
	BytesRaw       uint64 // batch bytes before compression
	BytesWire      uint64 // request bodies as sent (compressed and sealed)
	Batches        uint64 // acknowledged batches
	BatchSizes     Histogram
	Acks           uint64    // synchronous commits acknowledged by the buddy
	Latency        Histogram // batch round trip, microseconds
	QueueDepth     int       // records waiting
	QueueOverflows uint64    // changes not queued because the queue was full
	SendErrors     uint64    // batches that failed
	Degraded       uint64    // synchronous commits served without a second copy (Degrade policy)
	DegradedAlone  uint64    // of Degraded, those made while no other node answered at all (alone, or cut off)
	FullCopies     uint64    // full copies sent because the buddy reported a gap
	Resyncs        int       // sessions waiting for a full resend

	// Received from the owners this node backs up.
	Backups        int    // backup copies held
	RecordsApplied uint64 // records applied
	RecordsIgnored uint64 // old or duplicate records
	GapsReported   uint64 // deltas that did not match the backup's version
	RecordsFenced  uint64 // records refused: another node owns their session under a newer epoch
	BackupsRefused uint64 // new copies not taken: the node held MaxBackups
	BytesReceived  uint64
	Rejected       map[string]uint64 // requests rejected, by reason
	// Unauthenticated is the bytes of requests not authenticated yet that
	// the node holds now (at most Config.MaxUnauthenticated).
	Unauthenticated int64
	BackupsExpired  uint64

	// Cluster lifecycle.
	Peers          []PeerStatus
	Draining       bool
	RingChanges    uint64            // membership changes that recomputed the ring
	Failovers      uint64            // backup copies handed out (or taken here) because their owner was gone
	Fetches        map[string]uint64 // fetches for this node's requests, by outcome (Source*)
	HandedOut      uint64            // fetches of peers answered with a session
	FetchPending   uint64            // fetches of peers answered "ask again" (session busy here)
	OwnershipMoves uint64            // owned sessions this node gave up to another
	// MovesRefused counts handovers that this node's buddy refused: it had
	// handed its copy of the session out already (it took this node for
	// dead), so the asker was sent to the node that took it.
	MovesRefused uint64
	FencedLocal  uint64 // owned sessions dropped because another node owns them under a newer epoch
	Pauses       uint64 // times this process was found paused for longer than DeadAfter
	// MembershipMessages counts the failure detector's requests this node
	// sent (pings, indirect probes, dead rumours); MembershipBytes their
	// sealed bytes, requests and replies. Config.Membership's own traffic
	// is not in them.
	MembershipMessages uint64
	MembershipBytes    uint64
	ConfigMismatches   uint64 // peers found with other cookie keys or settings (each time it is found)
	Promoted           uint64 // backup copies taken over from a draining owner
	TransferSessions   uint64 // full copies sent to a new buddy
	TransferBytes      uint64 // their raw bytes
	Drains             uint64 // graceful shutdowns
}

// Histogram counts observations in power-of-two buckets: Buckets[i] counts
// values below 2^i (and at least 2^(i-1)).
type Histogram struct {
	Count   uint64
	Sum     uint64
	Buckets [32]uint64
}

// hist is the live, lock-free form of a Histogram.
type hist struct {
	count, sum atomic.Uint64
	buckets    [32]atomic.Uint64
}

func (h *hist) observe(v uint64) {
	h.count.Add(1)
	h.sum.Add(v)
	i := 0
	for i < 31 && v >= 1<<i {
		i++
	}
	h.buckets[i].Add(1)
}

func (h *hist) snapshot() Histogram {
	out := Histogram{Count: h.count.Load(), Sum: h.sum.Load()}
	for i := range h.buckets {
		out.Buckets[i] = h.buckets[i].Load()
	}
	return out
}

// Quantile returns an upper bound of the q-quantile (0 < q <= 1).
func (h Histogram) Quantile(q float64) uint64 {
	if h.Count == 0 {
		return 0
	}
	target := uint64(q * float64(h.Count))
	var seen uint64
	for i, n := range h.Buckets {
		seen += n
		if seen >= target && n > 0 {
			return 1 << i
		}
	}
	return 1 << 31
}

// Rejection reasons, the keys of Stats.Rejected.
const (
	RejectTooLarge  = "too_large"
	RejectAuth      = "auth"
	RejectReplay    = "replay"
	RejectUnknown   = "unknown_node"
	RejectMalformed = "malformed"
	RejectVersion   = "version"
	RejectBomb      = "decompression_limit"
	RejectMethod    = "method"
	RejectStale     = "stale" // names an incarnation of the sender that is not the current one
	RejectBusy      = "busy"  // beyond the bytes held for unauthenticated requests (or for decoding)
	RejectSlow      = "slow"  // a body that did not come within ReplicationTimeout
	RejectProof     = "proof" // a fetch without a valid cookie of the session
)

var rejectReasons = []string{RejectTooLarge, RejectAuth, RejectReplay, RejectUnknown, RejectMalformed, RejectVersion, RejectBomb, RejectMethod, RejectStale, RejectBusy, RejectSlow, RejectProof}

type counters struct {
	recordsSent, bytesRaw, bytesWire, batches, acks             atomic.Uint64
	queueOverflows, sendErrors, degraded, fullCopies            atomic.Uint64
	degradedAlone                                               atomic.Uint64
	recordsApplied, recordsIgnored, gapsReported, bytesReceived atomic.Uint64
	recordsFenced, backupsExpired, backupsRefused               atomic.Uint64
	batchSizes, latency                                         hist
	rejected                                                    [12]atomic.Uint64
	failovers, ownershipMoves, promoted, ringChanges            atomic.Uint64
	movesRefused                                                atomic.Uint64
	handedOut, fetchPending, fencedLocal, pauses, mismatches    atomic.Uint64
	memberMsgs, memberBytes                                     atomic.Uint64
	transferSessions, transferBytes, drains                     atomic.Uint64
	fetches                                                     [7]atomic.Uint64
}

func (c *counters) fetched(source string) {
	for i, s := range fetchSources {
		if s == source {
			c.fetches[i].Add(1)
			return
		}
	}
}

func (c *counters) reject(reason string) {
	for i, r := range rejectReasons {
		if r == reason {
			c.rejected[i].Add(1)
			return
		}
	}
}

func micros(d time.Duration) uint64 { return uint64(max(d, 0) / time.Microsecond) }
