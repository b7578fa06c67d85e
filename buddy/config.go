package buddy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
)

// Mode says when a commit counts as replicated.
type Mode int

const (
	// Sync (the default) makes Replicate's acknowledgement wait until the
	// buddy holds the change, so the response header goes out only once
	// the change exists on two nodes.
	Sync Mode = iota
	// Async queues the change and acknowledges at once. A crash of the
	// owner loses what was still queued: Stats().QueueDepth and
	// ReplicationLag bound it.
	Async
)

func (m Mode) String() string {
	switch m {
	case Sync:
		return "sync"
	case Async:
		return "async"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ErrorPolicy says what a synchronous commit does when its change cannot get
// a second copy: no other node answers (the node is alone, or cut off from
// every peer), or no node acknowledged it within ReplicationTimeout. A buddy
// that fails is replaced by the next live node at once, and the commit waits
// for that one; the policy applies only when there is none. A commit whose
// session another node owns now (its buddy fenced it) fails with
// core.ErrSessionMoved whatever the policy.
type ErrorPolicy int

const (
	// Degrade (the default) serves the request anyway, counts it in
	// Stats().Degraded, and resends the session in full once a buddy
	// answers. The change exists on one node until then.
	Degrade ErrorPolicy = iota
	// Fail fails the request with core.ErrReplication (503 through core's
	// default error handler). The change is still committed on this node.
	Fail
)

// Peer is one node of the cluster.
type Peer struct {
	// ID names the node; IDs order the buddy ring. Required, at most 64
	// bytes.
	ID string
	// Addr is the node's replication address, host:port. Required.
	Addr string
	// Zone is the node's failure domain (rack, machine, availability zone).
	// A node prefers a buddy in another zone. Default "" (one zone).
	Zone string
}

// Config configures a Node. Fields without a stated requirement have working
// defaults.
type Config struct {
	// ID is this node's ID. Required.
	ID string
	// Zone is this node's failure domain. Default "".
	Zone string
	// ListenAddr is the replication listener's address (not the
	// application's port). Required unless Listener is set.
	ListenAddr string
	// Listener, when set, is used instead of listening on ListenAddr.
	// Tests pass a listener on 127.0.0.1:0.
	Listener net.Listener
	// AdvertiseAddr is the address peers dial. Default: the listener's
	// address.
	AdvertiseAddr string
	// Peers is the static cluster: every node, this one included or not.
	Peers []Peer
	// ClusterKeys authenticate and encrypt every replication message
	// (AES-256-GCM): each exactly 32 bytes; the first seals, all open, so
	// keys rotate by adding the new key second on every node, then moving
	// it first, then dropping the old one. Required.
	ClusterKeys [][]byte
	// TLS, when set, serves and dials HTTP/2 over TLS; set ClientCAs with
	// ClientAuth tls.RequireAndVerifyClientCert and Certificates (used as
	// the client certificate too) for mutual TLS. Default nil: HTTP/2
	// without TLS (h2c, prior knowledge), still sealed with ClusterKeys.
	TLS *tls.Config
	// Mode is Sync (default) or Async.
	Mode Mode
	// OnReplicationError is Degrade (default) or Fail.
	OnReplicationError ErrorPolicy
	// AsyncLinger is how long, in Async mode, a batch may wait to fill
	// before it is sent; it adds that much to the window of changes a crash
	// can lose. Default 2 ms; negative disables it. Sync mode ignores it.
	AsyncLinger time.Duration
	// SyncLinger is the longest, in Sync mode, a batch waits to fill
	// before it is sent, and it waits only while it holds fewer records
	// than the batch before it: under concurrent load the commits that
	// batch released commit again soon, and one batch for all of them
	// costs both nodes far less CPU than one each; a lone client (batches
	// of one record) never waits. Default 300 µs; negative disables it.
	// Async mode ignores it.
	SyncLinger time.Duration
	// ReplicationTimeout bounds how long a synchronous commit waits for its
	// buddy, and each replication request. A buddy that does not answer in
	// time leaves the ring and the commit waits as long again for the next
	// node, so a commit waits at most twice this. Default 2 seconds.
	ReplicationTimeout time.Duration
	// Compression selects the codec for batches. Default: DefaultCodec,
	// "s2"; DefaultWANConfig picks "zstd-fastest". A node decodes every
	// codec whatever it encodes with, so nodes may differ.
	Compression compress.Config
	// MaxBatchRecords is the most records in one batch. Default 1024.
	MaxBatchRecords int
	// MaxBatchBytes is the most raw bytes in one batch (before
	// compression); a single larger record still goes alone. Default 1 MiB.
	MaxBatchBytes int
	// QueueSize bounds the records queued for the buddy. When it is full, a
	// change is not queued: its session is marked for a full resend, which
	// happens once the queue drains (counted in Stats().QueueOverflows). A
	// synchronous commit then fails or degrades per OnReplicationError.
	// Default 65,536.
	QueueSize int
	// TouchInterval is the least time between two touches of one session
	// sent to the buddy; backups expire TouchInterval after the owner's
	// idle timeout. Default 1 minute.
	TouchInterval time.Duration
	// PingInterval is how often the node pings every peer. Default 250 ms.
	PingInterval time.Duration
	// SuspectAfter marks a peer suspect after this long without an answer;
	// a suspect peer stays in the ring. Default 750 ms.
	SuspectAfter time.Duration
	// DeadAfter marks a peer dead after this long without an answer: it
	// leaves the ring, and its predecessor sends every session to its new
	// buddy. Default 1.5 s, so a crash is acted on within 2 s.
	DeadAfter time.Duration
	// Discovery, when set, feeds the peer list; Peers is then only the
	// starting list. Default nil: the static Peers.
	Discovery Discovery
	// Membership, when set, tells the node who is in the cluster and
	// alive (for example buddy/memberlist, on hashicorp/memberlist); the
	// node then runs no failure detector of its own, and Peers is only the
	// starting list. Default nil: the static Peers (or Discovery's), probed
	// by the node itself: each PingInterval it pings its two neighbours in
	// ID order and three random peers, asks three others to ping a peer
	// that does not answer before it suspects it, and tells every peer of
	// one it finds dead (PROTOCOL.md section 4c). Exclusive with Discovery.
	Membership Membership
	// DiscoveryInterval is how often Discovery is asked. Default 10 s.
	DiscoveryInterval time.Duration
	// TransferRate caps state transfer (full copies to a new buddy), in raw
	// bytes per second; live changes always go first. Default 128 MiB/s: a
	// million sessions of 1 KiB in about 8 s on a 2-core machine, where
	// uncapped the transfer takes both cores for about as long; negative
	// means no cap.
	TransferRate int
	// Dial opens the TCP connections to peers. Default a net.Dialer with a
	// 2 s timeout. Tests inject faults here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxBodySize bounds one replication message as received (a batch
	// stream's frame); other requests (fetch, ping, transfer, leave) are
	// bounded to 4 KiB. Default 4 MiB.
	MaxBodySize int
	// MaxDecodedSize bounds a batch after decompression. Default 8 MiB.
	// A node decodes at most four batches of that size at once; more wait
	// their turn as a refusal (503 busy) their sender retries.
	MaxDecodedSize int
	// MaxUnauthenticated bounds the bytes of batch-stream frames not
	// authenticated yet that the node holds at once, across every
	// connection: a frame beyond it is refused (503,
	// Stats().Rejected["busy"]), so that whoever can connect cannot make
	// the node hold more. Frames of a stream whose first frame
	// authenticated are held within a second budget of the same size, and
	// the other requests (pings, fetches, at most 4 KiB each) within a
	// third one of 1024 requests, so that such a flood cannot starve the
	// streams already running nor the failure detector. Default 4 times
	// MaxBodySize.
	MaxUnauthenticated int
	// MaxBackups bounds the backup copies the node holds for other nodes
	// (fences of handed-out or ended sessions not counted). A new copy
	// beyond it is refused (Stats().BackupsRefused): its session has one
	// copy, and its owner's synchronous commit fails or degrades per
	// OnReplicationError. Default 2,000,000, twice core's default
	// MaxSessions: a node backs up its predecessor, and takes a leaving
	// node's sessions over.
	MaxBackups int
	// Limits bound what a decoded batch may hold. Default DefaultLimits().
	Limits Limits
	// Logger receives the node's log records. Default: discarded. The
	// node adds node=<ID> to every record itself: pass a logger without
	// it (a logger.With("node", id) prints the attribute twice).
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// streamIdle overrides how long a batch stream may idle (tests).
	streamIdle time.Duration
}

// DefaultCodec is the codec a Config without Compression.Codec sends
// with. On a local network CPU is scarcer than bandwidth: on the batches of
// small deltas that replication sends, s2 costs a fraction of zstd-fastest's
// CPU for a few more bytes (2.6x instead of 4.2x on a batch; 46 against 42
// wire bytes per small write, where the envelope and record headers make
// most of the bytes). Measured in bench/README.md (d): replication's CPU
// per write about halves, async throughput 88-90% of no replication
// against 81% with zstd.
const DefaultCodec = compress.NameS2

// DefaultLANConfig returns the defaults for nodes on one local network (the
// values a zero Config gets): pings every 250 ms, dead after 1.5 s,
// replication timeout 2 s, s2 compression. Set ID, ListenAddr, Peers and
// ClusterKeys.
func DefaultLANConfig() Config {
	return Config{
		ReplicationTimeout: 2 * time.Second, PingInterval: 250 * time.Millisecond,
		SuspectAfter: 750 * time.Millisecond, DeadAfter: 1500 * time.Millisecond,
		TouchInterval: time.Minute, DiscoveryInterval: 10 * time.Second,
		Compression: compress.Config{Codec: DefaultCodec},
	}
}

// DefaultWANConfig returns defaults for nodes farther apart (other racks or
// data centers, higher and more variable latency): pings every second, dead
// after 6 s, replication timeout 5 s, and zstd-fastest, which trades CPU for
// about 40% fewer bytes per batch. Set ID, ListenAddr, Peers and
// ClusterKeys.
func DefaultWANConfig() Config {
	c := DefaultLANConfig()
	c.ReplicationTimeout, c.PingInterval = 5*time.Second, time.Second
	c.SuspectAfter, c.DeadAfter = 3*time.Second, 6*time.Second
	c.Compression.Codec = compress.NameZstdFastest
	return c
}

// ClusterKeySize is the size of a cluster key in bytes (AES-256).
const ClusterKeySize = wire.ClusterKeySize

// Limits bound what a node accepts in one batch; see wire.Limits.
type Limits = wire.Limits

// DefaultLimits returns the limits a Config without Limits gets; see
// wire.DefaultLimits.
func DefaultLimits() Limits { return wire.DefaultLimits() }

// ErrInvalidConfig wraps every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("buddy: invalid config")

func (cfg Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return cfg, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if cfg.ID == "" || len(cfg.ID) > 64 {
		return bad("ID: %q must be 1 to 64 bytes", cfg.ID)
	}
	if cfg.ListenAddr == "" && cfg.Listener == nil {
		return bad("ListenAddr or Listener is required")
	}
	if len(cfg.ClusterKeys) == 0 {
		return bad("ClusterKeys: at least one 32-byte key is required")
	}
	for i, k := range cfg.ClusterKeys {
		if len(k) != 32 {
			return bad("ClusterKeys[%d]: %d bytes, need 32", i, len(k))
		}
	}
	if cfg.Membership != nil && cfg.Discovery != nil {
		return bad("Membership and Discovery: set one of them")
	}
	seen := map[string]bool{}
	for i, p := range cfg.Peers {
		if p.ID == "" || len(p.ID) > 64 {
			return bad("Peers[%d].ID: %q must be 1 to 64 bytes", i, p.ID)
		}
		if seen[p.ID] {
			return bad("Peers[%d].ID: %q listed twice", i, p.ID)
		}
		seen[p.ID] = true
		if p.ID == cfg.ID {
			continue
		}
		if _, _, err := net.SplitHostPort(p.Addr); err != nil {
			return bad("Peers[%d].Addr: %v", i, err)
		}
	}
	if cfg.Mode != Sync && cfg.Mode != Async {
		return bad("Mode: unknown %v", cfg.Mode)
	}
	if cfg.OnReplicationError != Degrade && cfg.OnReplicationError != Fail {
		return bad("OnReplicationError: unknown %d", cfg.OnReplicationError)
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"ReplicationTimeout", &cfg.ReplicationTimeout, 2 * time.Second},
		{"TouchInterval", &cfg.TouchInterval, time.Minute},
		{"PingInterval", &cfg.PingInterval, 250 * time.Millisecond},
		{"SuspectAfter", &cfg.SuspectAfter, 750 * time.Millisecond},
		{"DeadAfter", &cfg.DeadAfter, 1500 * time.Millisecond},
		{"DiscoveryInterval", &cfg.DiscoveryInterval, 10 * time.Second},
	}
	if cfg.Compression.Codec == "" {
		cfg.Compression.Codec = DefaultCodec
	}
	if cfg.AsyncLinger == 0 {
		cfg.AsyncLinger = 2 * time.Millisecond
	}
	if cfg.SyncLinger == 0 {
		cfg.SyncLinger = 300 * time.Microsecond
	}
	for _, d := range durations {
		if *d.d < 0 {
			return bad("%s: negative (%v)", d.name, *d.d)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	ints := []struct {
		name string
		n    *int
		def  int
	}{
		{"MaxBatchRecords", &cfg.MaxBatchRecords, 1024},
		{"MaxBatchBytes", &cfg.MaxBatchBytes, 1 << 20},
		{"QueueSize", &cfg.QueueSize, 65536},
		{"MaxBodySize", &cfg.MaxBodySize, 4 << 20},
		{"MaxDecodedSize", &cfg.MaxDecodedSize, 8 << 20},
		{"MaxUnauthenticated", &cfg.MaxUnauthenticated, 0},
		{"MaxBackups", &cfg.MaxBackups, 2_000_000},
	}
	if cfg.TransferRate == 0 {
		cfg.TransferRate = 128 << 20
	}
	for _, n := range ints {
		if *n.n < 0 {
			return bad("%s: negative (%d)", n.name, *n.n)
		}
		if *n.n == 0 {
			*n.n = n.def
		}
	}
	if cfg.MaxUnauthenticated == 0 {
		cfg.MaxUnauthenticated = 4 * cfg.MaxBodySize
	}
	if cfg.MaxUnauthenticated < cfg.MaxBodySize {
		return bad("MaxUnauthenticated %d is below MaxBodySize %d: no frame could be read", cfg.MaxUnauthenticated, cfg.MaxBodySize)
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	if cfg.MaxBatchRecords > cfg.Limits.MaxRecords {
		return bad("MaxBatchRecords %d exceeds Limits.MaxRecords %d: peers would reject the batches", cfg.MaxBatchRecords, cfg.Limits.MaxRecords)
	}
	if cfg.SuspectAfter > cfg.DeadAfter {
		return bad("SuspectAfter %v exceeds DeadAfter %v", cfg.SuspectAfter, cfg.DeadAfter)
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.streamIdle == 0 {
		cfg.streamIdle = streamIdle
	}
	return cfg, nil
}
