// Package buddy replicates Tandem sessions to a backup node, the buddy.
//
// A Node implements core.Replicator: wire it into core.Config.Replicator and
// every committed change of a session goes to the node's buddy as a delta
// (only the attributes that changed), batched with the other changes of the
// moment (group commit), compressed, sealed with the cluster key, over
// HTTP/2. The buddy of a node is its successor in ID order among the peers.
//
// In Sync mode (the default) a commit's acknowledgement, and so the
// response header, waits until the buddy holds the change. In Async mode
// the change is queued and the response does not wait.
//
// The buddy keeps the copies apart from its own sessions. It applies a delta
// only on top of the version the delta names; when its copy is missing or
// behind, it answers that it needs a full copy, and the owner sends the
// whole session.
package buddy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/core"
)

// Node is one member of a Tandem cluster. Create it with New, hand it to
// core.Config.Replicator, and stop it with Shutdown, after the
// application's http.Server.Shutdown: Shutdown hands the node's sessions
// over to its buddy, so that a rolling restart logs nobody out. Close stops
// the node at once and hands nothing over, as a crash would: it is for
// tests, and for after Shutdown (which calls it).
//
// Locks, in the order they may be taken: a session's record lock (core;
// Replicate runs under it), then n.reconfig (never taken under a record
// lock: membership changes come from the probe loop and handlers), then
// core's store locks (listing sessions) and the sender's (sender.mu). The view's
// lock, the backups' shard locks, the caches' locks and the windows' lock
// are leaves: nothing is taken under them. A per-session stripe of
// n.handoff is taken before core's locks (Surrender, Install) and the
// backups' (handOut, take). Nothing waits on the network under a lock
// but a handoff stripe, which a hand-out holds while the session's
// requests finish (bounded by handoverWait).
type Node struct {
	cfg     Config
	log     *slog.Logger
	sealer  *wire.Sealer
	comp    *compress.Compressor
	bufs    bufPool
	view    *view
	windows windowSet
	seq     atomic.Uint64

	incarnation uint64 // this run's start time: peers spot a restart by it
	boot        uint64 // this run's random boot nonce: requests are sealed for it
	draining    atomic.Bool
	handingOver atomic.Bool               // draining, and the buddy holds every session
	location    atomic.Pointer[[2]string] // owner, backup for cookies
	fp          atomic.Pointer[fingerprint]
	misses      missCache
	handoff     stripes // serializes a session's hand-outs with its promotion
	moves       moveCache
	moving      moving                 // handovers waiting for the buddy's word
	reconfig    sync.Mutex             // serializes reconfigure: see there
	drainedTo   atomic.Pointer[string] // the buddy that took every session over at the drain
	probesOff   chan struct{}          // closed by Shutdown before it announces the leave
	release     chan struct{}          // signals releaseLoop
	members     chan struct{}          // signals probeLoop that Config.Membership changed
	rediscover  chan struct{}          // signals probeLoop to ask Discovery now
	lastAsked   atomic.Int64           // when rediscover was last signalled, Unix ns
	discovered  atomic.Bool            // Discovery (or Membership) answered once
	rounds      atomic.Uint64          // probe rounds run (tests)
	roundBusy   atomic.Bool            // a probe round is running
	helloProbes probeSet               // peers pinged back after their first ping
	unauth      budget                 // bytes held for requests not authenticated yet
	authed      budget                 // bytes held for frames of streams whose first frame authenticated
	calls       budget                 // bytes held for the bodies of the other requests, not authenticated yet
	decoding    budget                 // bytes held for batches being decompressed
	logs        logLimit               // rate limit of the rejection log lines

	mgr atomic.Pointer[core.Manager]
	// lastDegradedLog rate-limits the log line of degraded commits.
	lastDegradedLog atomic.Int64
	backups         *backups
	sender          *sender
	touches         touchThrottle
	stats           counters

	ln     net.Listener
	srv    *http.Server
	router *router // the replication port's listener; serves batch streams
	client *http.Client
	scheme string
	// tlsClient is the TLS configuration of batch streams' connections
	// (nil without TLS).
	tlsClient *tls.Config

	closedMu  sync.Mutex
	closed    bool
	stop      chan struct{}
	ctx       context.Context // canceled by Close: ends requests in flight
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ core.Replicator = (*Node)(nil)
	_ core.Toucher    = (*Node)(nil)
	_ core.Binder     = (*Node)(nil)
	_ core.Locator    = (*Node)(nil)
)

// New validates cfg, starts the replication listener and the sender, and
// returns the node.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sealer, err := wire.NewSealer(cfg.ID, cfg.ClusterKeys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	comp, err := compress.New(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("%w: Compression: %w", ErrInvalidConfig, err)
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger.With("node", cfg.ID), sealer: sealer, comp: comp,
		view: newView(cfg.ID, cfg.Zone, cfg.Peers, time.Now), windows: windowSet{m: make(map[string]*wire.ReplayWindow), boots: make(map[string]uint64)},
		backups: newBackups(cfg.MaxBackups), stop: make(chan struct{}), probesOff: make(chan struct{}), release: make(chan struct{}, 1),
		members: make(chan struct{}, 1), rediscover: make(chan struct{}, 1),
		incarnation: uint64(time.Now().UnixNano()),
	}
	n.handoff.seed = maphash.MakeSeed()
	n.unauth.max = int64(cfg.MaxUnauthenticated)
	n.calls.max = maxCalls * maxCallBody
	n.authed.max = int64(cfg.MaxUnauthenticated)
	n.decoding.max = 4 * int64(cfg.MaxDecodedSize)
	for n.boot == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
		n.boot = binary.BigEndian.Uint64(b[:])
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.seq.Store(n.incarnation)
	n.touches.init()
	for _, p := range cfg.Peers {
		if p.ID != cfg.ID {
			n.windows.add(p.ID)
		}
	}
	n.sender = newSender(n)
	n.location.Store(&[2]string{cfg.ID, ""})
	if err := n.listen(); err != nil {
		n.cancel()
		return nil, err
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.sender.run(n.stop) }()
	// One round of pings (or the membership layer's first answer) before
	// returning, so the node starts with its buddy known.
	if err := n.joinMembership(); err != nil {
		n.Close()
		return nil, err
	}
	n.discover()
	if n.cfg.Membership == nil {
		n.probeAll()
	}
	if n.sender.buddy().ID == "" {
		n.log.Warn("buddy: running alone, sessions have no backup")
	}
	n.wg.Add(3)
	go func() { defer n.wg.Done(); n.expireLoop() }()
	go func() { defer n.wg.Done(); n.probeLoop() }()
	go func() { defer n.wg.Done(); n.releaseLoop() }()
	return n, nil
}

// windowSet holds, per peer, the replay window of its requests and the
// boot nonce it runs under as far as this node knows (0: not known yet).
type windowSet struct {
	mu    sync.Mutex
	m     map[string]*wire.ReplayWindow
	boots map[string]uint64
}

func (w *windowSet) add(id string) {
	w.mu.Lock()
	if _, ok := w.m[id]; !ok {
		w.m[id] = new(wire.ReplayWindow)
	}
	w.mu.Unlock()
}

// boot returns peer id's boot nonce, or 0.
func (w *windowSet) boot(id string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.boots[id]
}

// learnBoot records peer id's boot nonce, from an authenticated pong or
// ping.
func (w *windowSet) learnBoot(id string, boot uint64) {
	w.mu.Lock()
	if _, ok := w.m[id]; ok && boot != 0 {
		w.boots[id] = boot
	}
	w.mu.Unlock()
}

// forgetBoot forgets peer id's boot nonce if it is still old: the peer
// refused a request sealed for it (it restarted).
func (w *windowSet) forgetBoot(id string, old uint64) {
	w.mu.Lock()
	if w.boots[id] == old {
		delete(w.boots, id)
	}
	w.mu.Unlock()
}

func (w *windowSet) get(id string) (*wire.ReplayWindow, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.m[id]
	return r, ok
}

// listen starts the HTTP/2 server.
func (n *Node) listen() error {
	ln := n.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.ListenAddr); err != nil {
			return fmt.Errorf("buddy: listen: %w", err)
		}
	}
	n.ln = ln
	// The router does TLS itself and hands net/http cleartext HTTP/2.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	n.scheme = "http"
	var serverTLS *tls.Config
	if n.cfg.TLS != nil {
		n.scheme = "https"
		serverTLS = n.cfg.TLS.Clone()
		serverTLS.NextProtos = []string{"h2"}
	}
	n.router = newRouter(n, ln, serverTLS)
	n.srv = &http.Server{
		Handler:           n.routes(),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		// A peer needs a batch stream and a few requests at once; more
		// streams per connection only serve whoever would hold them open.
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConn},
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	var clientProtos http.Protocols
	if n.cfg.TLS != nil {
		clientProtos.SetHTTP2(true)
	} else {
		clientProtos.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{
		Protocols:           &clientProtos,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     5 * time.Minute,
		DialContext:         n.cfg.Dial,
	}
	if n.cfg.TLS != nil {
		tc := n.cfg.TLS.Clone()
		if len(tc.Certificates) > 0 && tc.GetClientCertificate == nil {
			certs := tc.Certificates
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		if tc.RootCAs == nil {
			tc.RootCAs = tc.ClientCAs
		}
		tr.TLSClientConfig = tc
		n.tlsClient = tc.Clone()
		n.tlsClient.NextProtos = []string{"h2"}
	}
	n.client = &http.Client{Transport: tr}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.router.run()
	}()
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(n.router); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("buddy: replication server stopped", "err", err)
		}
	}()
	return nil
}

// tlsClientFor is the TLS configuration of a batch stream's connection to
// addr: the server name is addr's host unless the configuration names one.
func (n *Node) tlsClientFor(addr string) *tls.Config {
	if n.tlsClient.ServerName != "" {
		return n.tlsClient
	}
	tc := n.tlsClient.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		tc.ServerName = host
	}
	return tc
}

// maxStreamsPerConn bounds the concurrent streams of one connection to the
// replication port (Go's default is 250).
const maxStreamsPerConn = 32

// spawn runs f in a goroutine that Close waits for, unless the node is
// closed already; it reports whether f runs.
func (n *Node) spawn(f func()) bool {
	n.closedMu.Lock()
	defer n.closedMu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// Addr returns the address the replication listener is bound to.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// ID returns the node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Close stops the node at once: the listener, the sender (waiting commits
// fail) and the expiry loop. It does not hand sessions over: the sessions
// this node owns survive only as their buddy's backup copies, as after a
// crash. A deployment stops a node with Shutdown, which calls Close when it
// is done; Close is for tests, and is safe to call again after Shutdown.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closedMu.Lock()
		n.closed = true
		n.closedMu.Unlock()
		close(n.stop)
		n.cancel()
		if m := n.cfg.Membership; m != nil {
			if err := m.Close(); err != nil {
				n.log.Warn("buddy: membership did not close", "err", err)
			}
		}
		_ = n.srv.Close()
		n.wg.Wait()
		n.client.CloseIdleConnections()
	})
	return nil
}

// Bind implements core.Binder: the node reads the manager's sessions to send
// full copies, and tells its peers the manager's fingerprint (cookie keys
// and shared settings), so that a misconfigured node is spotted.
func (n *Node) Bind(m *core.Manager) {
	settings, keys := m.Fingerprint()
	n.fp.Store(&fingerprint{settings: settings, keys: keys})
	n.mgr.Store(m)
}

// Location implements core.Locator: this node owns the sessions it serves,
// and its buddy backs them up.
func (n *Node) Location() (owner, backup string) {
	l := n.location.Load()
	return l[0], l[1]
}

// Replicate implements core.Replicator.
func (n *Node) Replicate(c *core.Change) core.Ack {
	kind := wire.KindDelta
	switch {
	case c.Removed:
		kind = wire.KindRemove
		n.touches.forget(c.ID)
		if c.Epoch != 0 {
			// It ended here: no stale copy of it may come back.
			n.backups.endHere(c.ID, n.cfg.ID, c.Epoch, n.cfg.Now().UnixNano())
		}
	case c.Full:
		kind = wire.KindFull
		if c.PrevID != "" {
			n.touches.forget(c.PrevID)
			n.backups.endHere(c.PrevID, n.cfg.ID, c.Epoch, n.cfg.Now().UnixNano())
		}
		n.touches.mark(c.ID, c.Accessed.UnixNano())
	default:
		n.touches.mark(c.ID, c.Accessed.UnixNano())
	}
	b, q := n.sender.enqueue(wire.Record{Kind: kind, Change: c})
	switch {
	case n.cfg.Mode == Async:
		return nil
	case q == queueFull:
		return &ack{n: n, id: c.ID, err: errQueueFull}
	case q == noBuddy && n.view.empty():
		return nil // a single node: nothing to replicate to
	case q == noBuddy:
		return &ack{n: n, id: c.ID, err: errAlone}
	}
	return &ack{n: n, b: b, id: c.ID}
}

// Flush waits until every change queued before the call, and every pending
// full resend, has been acknowledged by the buddy, or ctx ends.
func (n *Node) Flush(ctx context.Context) error { return n.sender.flush(ctx) }

// Touch implements core.Toucher: at most one touch per session per
// TouchInterval reaches the buddy.
func (n *Node) Touch(id string, at time.Time) {
	if n.touches.due(id, at.UnixNano(), int64(n.cfg.TouchInterval)) {
		n.sender.enqueue(wire.Record{Kind: wire.KindTouch, Change: &core.Change{ID: id, Accessed: at}})
	}
}

// Backup returns the backup copy this node holds of another node's session,
// as a full copy, and the owner that sent it.
func (n *Node) Backup(id string) (c *core.Change, owner string, ok bool) {
	return n.backups.get(id)
}

// BackupIDs returns the IDs of the backup copies held for owner, or for
// every owner when owner is "".
func (n *Node) BackupIDs(owner string) []string { return n.backups.ids(owner) }

// fullCopies returns full-copy records of the given sessions, and
// removals for those that ended here since. A session that is gone for
// another reason gets nothing: one that moved has its move record (the
// buddy's copy became a fence for the new owner, or, when the buddy itself
// took the session, stays its copy to take should the owner's answer be
// lost); an expired or evicted one's copy expires on the buddy by itself.
// (A removal for a session that moved to the buddy dropped the copy the
// buddy relied on: a drain that ended before its answer left the session
// nowhere.)
func (n *Node) fullCopies(ids []string) []wire.Record {
	m := n.mgr.Load()
	out := make([]wire.Record, 0, len(ids))
	for _, id := range ids {
		if m != nil {
			if c, ok := m.Snapshot(id); ok {
				out = append(out, wire.Record{Kind: wire.KindFull, Change: c})
				continue
			}
		}
		if epoch, ok := n.backups.endedHere(id, n.cfg.ID); ok {
			// It ended here (a logout, or the old ID of a login): so it
			// does on the buddy.
			out = append(out, wire.Record{Kind: wire.KindRemove, Change: &core.Change{ID: id, Epoch: epoch, Removed: true}})
		}
	}
	return out
}

// degradedLog notes a commit served without a second copy, at most once a
// second (every one is counted in Stats().Degraded).
func (n *Node) degradedLog(err error) {
	now := time.Now().UnixNano()
	last := n.lastDegradedLog.Load()
	if now-last < int64(time.Second) || !n.lastDegradedLog.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn("buddy: commit served without a second copy", "err", err, "degraded_total", n.stats.degraded.Load())
}

// expireLoop drops backup copies whose sessions must have expired on their
// owner.
func (n *Node) expireLoop() {
	every := min(max(n.cfg.TouchInterval/2, time.Second), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.ExpireBackups()
		}
	}
}

// ExpireBackups drops the backup copies idle for longer than the owner's
// idle timeout plus TouchInterval, or older than the absolute lifetime, and
// returns how many. The node calls it periodically; tests call it directly.
func (n *Node) ExpireBackups() int {
	m := n.mgr.Load()
	if m == nil {
		return 0
	}
	idle, life := m.Timeouts()
	var dropped []expiredCopy
	k := n.backups.expire(n.cfg.Now().UnixNano(), int64(idle+n.cfg.TouchInterval), int64(life), &dropped)
	n.stats.backupsExpired.Add(uint64(k))
	n.reportExpired(m, dropped)
	return k
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	buddy, depth, resync := n.sender.snapshot()
	c := &n.stats
	st := Stats{
		ID: n.cfg.ID, Buddy: buddy, Mode: n.cfg.Mode.String(),
		RecordsSent: c.recordsSent.Load(), BytesRaw: c.bytesRaw.Load(), BytesWire: c.bytesWire.Load(),
		Batches: c.batches.Load(), BatchSizes: c.batchSizes.snapshot(), Acks: c.acks.Load(),
		Latency: c.latency.snapshot(), QueueDepth: depth, QueueOverflows: c.queueOverflows.Load(),
		SendErrors: c.sendErrors.Load(), Degraded: c.degraded.Load(), DegradedAlone: c.degradedAlone.Load(), FullCopies: c.fullCopies.Load(),
		Resyncs: resync, Backups: n.backups.len(), RecordsApplied: c.recordsApplied.Load(),
		RecordsIgnored: c.recordsIgnored.Load(), GapsReported: c.gapsReported.Load(), RecordsFenced: c.recordsFenced.Load(), BackupsRefused: c.backupsRefused.Load(),
		BytesReceived: c.bytesReceived.Load(), BackupsExpired: c.backupsExpired.Load(),
		Unauthenticated: n.unauth.used.Load() + n.calls.used.Load(),
		Rejected:        make(map[string]uint64), Fetches: make(map[string]uint64),
		Failovers: c.failovers.Load(), OwnershipMoves: c.ownershipMoves.Load(), MovesRefused: c.movesRefused.Load(), Promoted: c.promoted.Load(),
		HandedOut: c.handedOut.Load(), FetchPending: c.fetchPending.Load(), FencedLocal: c.fencedLocal.Load(),
		Pauses: c.pauses.Load(), ConfigMismatches: c.mismatches.Load(),
		MembershipMessages: c.memberMsgs.Load(), MembershipBytes: c.memberBytes.Load(),
		RingChanges: c.ringChanges.Load(), TransferSessions: c.transferSessions.Load(),
		TransferBytes: c.transferBytes.Load(), Drains: c.drains.Load(), Peers: n.Peers(),
		Draining: n.draining.Load(),
	}
	for i, src := range fetchSources {
		if v := c.fetches[i].Load(); v > 0 {
			st.Fetches[src] = v
		}
	}
	for i, r := range rejectReasons {
		if v := c.rejected[i].Load(); v > 0 {
			st.Rejected[r] = v
		}
	}
	return st
}

// touchThrottle remembers when each session's last touch went out.
type touchThrottle struct {
	shards [16]struct {
		mu   sync.Mutex
		last map[string]int64
	}
}

func (t *touchThrottle) init() {
	for i := range t.shards {
		t.shards[i].last = make(map[string]int64)
	}
}

func (t *touchThrottle) shard(id string) int {
	if id == "" {
		return 0
	}
	return int(id[len(id)-1]) % len(t.shards)
}

// due reports whether a touch of id at now should go out, and records it.
func (t *touchThrottle) due(id string, now, interval int64) bool {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if last, ok := sh.last[id]; ok && now-last < interval {
		return false
	}
	sh.last[id] = now
	return true
}

// mark records that the buddy learned of an access at now with a change.
func (t *touchThrottle) mark(id string, now int64) {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	sh.last[id] = max(sh.last[id], now)
	sh.mu.Unlock()
}

func (t *touchThrottle) forget(id string) {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	delete(sh.last, id)
	sh.mu.Unlock()
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
