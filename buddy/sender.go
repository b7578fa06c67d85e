package buddy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

var (
	// errQueueFull is the cause of a synchronous commit that found the
	// queue full.
	errQueueFull = errors.New("buddy: replication queue full")
	// errAlone is the cause of a synchronous commit made while no other
	// node of the cluster answers: it exists on this node only.
	errAlone = errors.New("buddy: no other node answers: the change has one copy")
)

// batch is a group of records sent as one request. The records of a batch
// fill while the previous batch is in flight (group commit); every
// synchronous commit whose record is in it waits on done.
type batch struct {
	recs   []wire.Record
	bytes  int
	done   chan struct{}
	err    error
	resync bool // full copies from the resync set (state transfer)
	// fenced holds the sessions whose records the buddy refused because
	// another node owns them now: their commits fail. Written before done
	// is closed.
	fenced map[string]bool
	// refused holds the sessions whose new copies the buddy did not take
	// (it is full): their commits have one copy. Written before done is
	// closed.
	refused map[string]bool

	// One timer per batch, not per waiting commit, bounds the waits: it
	// starts with the first Wait and is stopped once the batch is done.
	expiryOnce sync.Once
	expired    chan struct{}
	timer      *time.Timer
}

// expiry returns a channel closed 2d after the first call: d for the
// buddy, and d more for the next node when the buddy does not answer (the
// batch's stream times out after d, the buddy leaves the ring and the batch
// goes to the next node; waiting d only, its commits would degrade just
// as their second copy was being made). A batch that cannot be sent to
// any other node fails at once instead, so this bounds only the wait of
// one that is still being delivered. A timer that fires much later than
// due means this process was paused meanwhile (a SIGSTOP, a VM freeze): the
// buddy had no chance to answer, so the wait is granted d once more.
func (b *batch) expiry(d time.Duration) <-chan struct{} {
	b.expiryOnce.Do(func() {
		b.expired = make(chan struct{})
		due := time.Now().Add(2 * d)
		fire := func() {
			if late := time.Since(due); late > pauseSlack {
				due = time.Now().Add(d)
				b.timer.Reset(d)
				return
			}
			close(b.expired)
		}
		b.timer = time.AfterFunc(2*d, fire)
	})
	return b.expired
}

// pauseSlack is how late a timer may fire before the process counts as
// having been paused.
const pauseSlack = 500 * time.Millisecond

// finish releases the batch's waiters with err.
func (b *batch) finish(err error) {
	b.err = err
	close(b.done)
	b.expiryOnce.Do(func() {}) // no timer starts after this
	if b.timer != nil {
		b.timer.Stop()
	}
}

// markFenced records that the buddy refused the records of sessions ids.
func (b *batch) markFenced(ids []string) {
	if b.fenced == nil {
		b.fenced = make(map[string]bool, len(ids))
	}
	for _, id := range ids {
		b.fenced[id] = true
	}
}

// sender ships records to the buddy: one batch in flight at a time, so the
// buddy sees each session's changes in version order. Its fields are
// changed only through its methods, under mu; see node.go for the lock
// order.
type sender struct {
	n *Node
	// paceFrom and paceRaw are the start and the raw bytes so far of the
	// state transfer under way (pace); run's goroutine alone uses them.
	paceFrom time.Time
	paceRaw  int

	mu sync.Mutex
	to Peer // the current buddy; ID "" when alone
	q  []*batch
	// size counts the records queued.
	size int
	// resync holds sessions whose copy on the buddy may be stale (a failed
	// batch, a queue overflow, a new buddy); they are resent in full once
	// the queue is empty.
	resync   map[string]struct{}
	inflight *batch
	// abort ends the stream of the batch in flight, so that a batch sent
	// to a buddy that is no longer the buddy is resent to the new one.
	abort func()
	wake  chan struct{}
	// switched is signaled when the buddy changes, ending a backoff.
	switched chan struct{}
	// generation counts buddy changes, so a transfer knows whether the
	// buddy it filled is still the buddy.
	generation uint64
	// retired holds the former buddies that still hold copies of this
	// node's sessions: they are told to drop them once the current buddy
	// holds every session.
	retired map[string]Peer
	// stream carries the batches; only the run goroutine touches it.
	stream *batchStream
	// want, when positive, is how many records the oldest batch must hold
	// before enqueue wakes the run goroutine, which lingers meanwhile
	// (Sync mode); lastSent is how many the last live batch carried.
	want     int
	lastSent int
}

func newSender(n *Node) *sender {
	return &sender{n: n, resync: make(map[string]struct{}), retired: make(map[string]Peer),
		wake: make(chan struct{}, 1), switched: make(chan struct{}, 1)}
}

// streamTo returns the batch stream to peer to, opening it (and closing
// one to another peer) when needed.
func (s *sender) streamTo(to Peer) (*batchStream, error) {
	if s.stream != nil && s.stream.to == to {
		return s.stream, nil
	}
	s.closeStream()
	// The abort is in place before the stream opens: a buddy that stalls
	// while it is asked to open one is left as soon as the ring drops it.
	ctx, cancel := context.WithCancel(s.n.ctx)
	s.mu.Lock()
	s.abort = cancel
	s.mu.Unlock()
	st, err := s.n.openStream(ctx, cancel, to)
	if err != nil {
		return nil, err
	}
	s.stream = st
	return st, nil
}

func (s *sender) closeStream() {
	if s.stream != nil {
		s.stream.close()
		s.stream = nil
	}
}

// approxSize estimates a record's encoded size, to cut batches.
func approxSize(c *core.Change) int {
	n := 40 + len(c.ID) + len(c.PrevID)
	for _, a := range c.Set {
		n += 8 + len(a.Key) + len(a.Value)
	}
	for _, k := range c.Deleted {
		n += 4 + len(k)
	}
	return n
}

// queued says what became of a record handed to enqueue.
type queued int

const (
	inBatch   queued = iota // in a batch, which enqueue returns
	noBuddy                 // not queued: no other node answers
	queueFull               // not queued: the queue is full; the session is marked for a full resend
)

// enqueue queues r and returns the batch it joined.
func (s *sender) enqueue(r wire.Record) (*batch, queued) {
	cfg := &s.n.cfg
	s.mu.Lock()
	if s.to.ID == "" {
		s.mu.Unlock()
		return nil, noBuddy
	}
	if s.size >= cfg.QueueSize {
		if r.Kind != wire.KindTouch && r.Kind != wire.KindMove {
			s.resync[r.Change.ID] = struct{}{}
		}
		s.mu.Unlock()
		s.n.stats.queueOverflows.Add(1)
		return nil, queueFull
	}
	size := approxSize(r.Change)
	var b *batch
	if len(s.q) > 0 {
		b = s.q[len(s.q)-1]
	}
	if b == nil || len(b.recs) >= cfg.MaxBatchRecords || b.bytes+size > cfg.MaxBatchBytes && len(b.recs) > 0 {
		b = &batch{done: make(chan struct{})}
		s.q = append(s.q, b)
	}
	b.recs = append(b.recs, r)
	b.bytes += size
	s.size++
	wake := s.want <= 0 || len(s.q) > 1 || len(s.q[0].recs) >= s.want
	s.mu.Unlock()
	if wake {
		s.signal()
	}
	return b, inBatch
}

// buddy returns the current buddy.
func (s *sender) buddy() Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to
}

// switchTo makes next the buddy, unless it is the buddy already and force
// is not set (force: the buddy restarted and holds nothing), and queues a
// full copy of the sessions ids for it. A batch in flight to the previous
// buddy is resent to next. It returns the previous buddy and the new
// generation, and whether anything changed.
func (s *sender) switchTo(next Peer, ids []string, force bool) (old Peer, gen uint64, switched bool) {
	s.mu.Lock()
	old = s.to
	if old.ID == next.ID && !force {
		gen = s.generation
		s.mu.Unlock()
		return old, gen, false
	}
	s.to = next
	s.generation++
	gen = s.generation
	if old.ID != "" && old.ID != next.ID {
		s.retired[old.ID] = old
	}
	delete(s.retired, next.ID)
	if next.ID != "" {
		for _, id := range ids {
			s.resync[id] = struct{}{}
		}
	}
	abort := s.abort
	s.mu.Unlock()
	if abort != nil {
		abort()
	}
	select {
	case s.switched <- struct{}{}:
	default:
	}
	s.signal()
	return old, gen, true
}

// current reports whether the buddy is still the one of generation gen.
func (s *sender) current(gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generation == gen
}

// retiredPeers returns the generation and the former buddies to release.
func (s *sender) retiredPeers() (uint64, []Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	peers := make([]Peer, 0, len(s.retired))
	for _, p := range s.retired {
		peers = append(peers, p)
	}
	return s.generation, peers
}

// released forgets former buddy id: it dropped its copies (or restarted).
func (s *sender) released(id string) {
	s.mu.Lock()
	delete(s.retired, id)
	s.mu.Unlock()
}

// snapshot returns the buddy's ID, the records queued and the sessions
// waiting for a full resend.
func (s *sender) snapshot() (buddy string, depth, resync int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to.ID, s.size, len(s.resync)
}

func (s *sender) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest batch off the queue, or builds one from the resync
// set when the queue is empty. The full copies are built without s.mu: a
// commit holds its session's lock while it queues (s.mu), so taking a
// session's lock under s.mu could deadlock.
func (s *sender) next() (*batch, Peer) {
	b, to, ids := s.take()
	if ids != nil {
		b.recs = s.n.fullCopies(ids)
	}
	return b, to
}

func (s *sender) take() (*batch, Peer, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.to.ID == "" {
		// Alone: nothing to send to. The waiting commits have one copy.
		for _, b := range s.q {
			b.finish(errAlone)
		}
		s.q, s.size = nil, 0
		clear(s.resync)
		return nil, Peer{}, nil
	}
	if len(s.q) > 0 {
		b := s.q[0]
		s.q[0] = nil
		s.q = s.q[1:]
		s.size -= len(b.recs)
		s.inflight = b
		s.lastSent = len(b.recs)
		return b, s.to, nil
	}
	if len(s.resync) == 0 {
		return nil, s.to, nil
	}
	ids := make([]string, 0, min(len(s.resync), s.n.cfg.MaxBatchRecords))
	for id := range s.resync {
		if len(ids) == cap(ids) {
			break
		}
		ids = append(ids, id)
		delete(s.resync, id)
	}
	s.inflight = &batch{done: make(chan struct{}), resync: true}
	return s.inflight, s.to, ids
}

// requeue puts b, which failed on a buddy that is no longer the buddy,
// back at the front of the queue: its commits keep waiting, and the new
// buddy, which holds none of its sessions, asks for full copies.
func (s *sender) requeue(b *batch) {
	s.mu.Lock()
	s.inflight = nil
	s.q = append([]*batch{b}, s.q...)
	s.size += len(b.recs)
	s.mu.Unlock()
}

// done ends the batch in flight with err.
func (s *sender) done(b *batch, err error) {
	s.mu.Lock()
	s.inflight = nil
	s.mu.Unlock()
	b.finish(err)
}

// addResync queues a full resend of the sessions ids.
func (s *sender) addResync(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		s.resync[id] = struct{}{}
	}
	s.mu.Unlock()
	s.signal()
}

// forget drops sessions from the resync set (they moved to another node).
func (s *sender) forget(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.resync, id)
	}
	s.mu.Unlock()
}

// flush waits until every record queued before the call, and every pending
// resync, reached the buddy.
func (s *sender) flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		var b *batch
		switch {
		case len(s.q) > 0:
			b = s.q[len(s.q)-1]
		case s.inflight != nil:
			b = s.inflight
		}
		idle := b == nil && (len(s.resync) == 0 || s.to.ID == "")
		s.mu.Unlock()
		if idle {
			return nil
		}
		s.signal()
		if b == nil {
			b = &batch{done: make(chan struct{})} // resync pending: look again shortly
			time.AfterFunc(5*time.Millisecond, func() { close(b.done) })
		}
		select {
		case <-b.done:
			// A failed batch's sessions went to the resync set, or the
			// batch was requeued: keep waiting until they are delivered.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run sends batches until stop is closed.
func (s *sender) run(stop <-chan struct{}) {
	defer s.closeStream()
	backoff := time.Duration(0)
	for {
		select {
		case <-stop:
			s.failAll(errors.New("buddy: node stopped"))
			return
		case <-s.wake:
		}
		s.linger(stop)
		for {
			sent := time.Now() // before next, which builds a resend's copies
			b, to := s.next()
			if b == nil {
				break
			}
			raw, err := s.send(to, b)
			if err == nil {
				s.done(b, nil)
				backoff = 0
				if b.resync {
					s.n.stats.transferSessions.Add(uint64(len(b.recs)))
					s.n.stats.transferBytes.Add(uint64(raw))
					s.pace(raw, sent, stop)
				}
				continue
			}
			s.n.log.Warn("buddy: replication to buddy failed", "buddy", to.ID, "records", len(b.recs), "err", err)
			if s.retarget(to, b, err) {
				backoff = 0
				continue
			}
			// Before the batch is done: a flush waiting on it must find
			// its sessions in the resync set.
			s.markResync(b)
			if s.buddy().ID == "" {
				err = fmt.Errorf("%w (%w)", errAlone, err) // no other node left to ask
			}
			s.done(b, err)
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			select {
			case <-stop:
				s.failAll(errors.New("buddy: node stopped"))
				return
			case <-s.switched: // a new buddy: no reason to wait
			case <-time.After(backoff):
			}
		}
	}
}

// retarget handles a batch that failed on buddy to: a buddy that failed
// (no connection, no answer in time) leaves the ring at once, and the batch
// goes to the next node, its commits still waiting, so that they are
// acknowledged once a second copy exists. It reports false when there is
// no other node to send the batch to, or to refused the batch itself.
func (s *sender) retarget(to Peer, b *batch, err error) bool {
	if errors.Is(err, errPeerRejected) || s.n.ctx.Err() != nil {
		return false // alive and refusing this batch, or this node is stopping
	}
	if s.buddy().ID == to.ID {
		s.n.markDown(to.ID)
	}
	if next := s.buddy(); next.ID == "" || next.ID == to.ID {
		return false
	}
	s.requeue(b)
	return true
}

// pace holds state transfer to Config.TransferRate. It paces the transfer
// as a whole, not each batch: it waits until the bytes sent since the
// transfer began (a resend batch after more than a second without one
// begins another) are due at the rate, so that a batch slowed by a
// collection or a busy buddy is made up by the next ones instead of
// lowering the rate. sent is when this batch's send began. Live changes
// always go before state transfer anyway.
func (s *sender) pace(raw int, sent time.Time, stop <-chan struct{}) {
	rate := s.n.cfg.TransferRate
	if rate <= 0 {
		return
	}
	d := time.Until(s.paceDue(raw, sent, rate))
	if d < time.Millisecond {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
	case <-t.C:
	}
}

// paceDue adds a batch of raw bytes whose send began at sent to the
// transfer under way at rate, and returns when the transfer's bytes so far
// are due.
func (s *sender) paceDue(raw int, sent time.Time, rate int) time.Time {
	at := func(bytes int) time.Time {
		return s.paceFrom.Add(time.Duration(float64(bytes) / float64(rate) * float64(time.Second)))
	}
	if s.paceFrom.IsZero() || sent.After(at(s.paceRaw).Add(time.Second)) {
		s.paceFrom, s.paceRaw = sent, 0 // the first batch of a transfer
	}
	s.paceRaw += raw
	return at(s.paceRaw)
}

// linger lets an async batch fill for up to Config.AsyncLinger before it
// goes: fewer, larger batches cost the two nodes less CPU per change. Sync
// commits never wait for it (their batches fill while the previous one is
// in flight).
func (s *sender) linger(stop <-chan struct{}) {
	if s.n.cfg.Mode == Sync {
		s.syncLinger(stop)
		return
	}
	d := s.n.cfg.AsyncLinger
	if d <= 0 {
		return
	}
	s.mu.Lock()
	full := len(s.q) > 1 || len(s.q) == 1 && len(s.q[0].recs) >= s.n.cfg.MaxBatchRecords/2
	s.mu.Unlock()
	if full {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
	case <-t.C:
	}
}

// syncLinger lets a Sync batch fill for up to Config.SyncLinger while it
// holds fewer records than the last batch: the commits that batch released
// are likely on their way again, and sending them together costs one round
// trip instead of several. A batch of one record never waits (one client,
// or a quiet node), and the wait ends as soon as the batch is as large as
// the last one, or a second batch is queued.
func (s *sender) syncLinger(stop <-chan struct{}) {
	d := s.n.cfg.SyncLinger
	if d <= 0 {
		return
	}
	s.mu.Lock()
	want := min(s.lastSent, s.n.cfg.MaxBatchRecords)
	if want <= 1 || len(s.q) != 1 || len(s.q[0].recs) >= want {
		s.mu.Unlock()
		return
	}
	s.want = want
	s.mu.Unlock()
	// The wake enqueue sent with this batch's first record may still be
	// pending: drain it, then wait for the one sent once the batch holds
	// want records.
	select {
	case <-s.wake:
	default:
	}
	s.mu.Lock()
	ready := len(s.q) != 1 || len(s.q[0].recs) >= want
	s.mu.Unlock()
	if !ready {
		t := time.NewTimer(d)
		select {
		case <-stop:
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
	s.mu.Lock()
	s.want = 0
	s.mu.Unlock()
}

// markResync remembers the sessions of a failed batch for a full resend.
func (s *sender) markResync(b *batch) {
	s.mu.Lock()
	for _, r := range b.recs {
		// A move's session is not this node's to resend: the move's
		// resolver takes it back if the move failed.
		if r.Kind != wire.KindTouch && r.Kind != wire.KindMove && !b.fenced[r.Change.ID] {
			s.resync[r.Change.ID] = struct{}{}
		}
	}
	s.mu.Unlock()
}

func (s *sender) failAll(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.q {
		b.finish(err)
	}
	s.q, s.size = nil, 0
}

// send delivers b to the buddy; when the buddy reports gaps it sends the
// full copies those sessions need before b counts as delivered, and when
// it refuses sessions another node owns now, this node gives them up.
func (s *sender) send(to Peer, b *batch) (int, error) {
	n := s.n
	recs := b.recs
	total := 0
	for attempt := 0; ; attempt++ {
		if len(recs) == 0 {
			return total, nil // a resend of sessions all gone since: nothing to say
		}
		start := time.Now()
		reply, raw, onWire, err := s.sendBatch(to, recs)
		total += raw
		if err != nil {
			n.stats.sendErrors.Add(1)
			return total, err
		}
		n.stats.batches.Add(1)
		n.stats.recordsSent.Add(uint64(len(recs)))
		n.stats.bytesRaw.Add(uint64(raw))
		n.stats.bytesWire.Add(uint64(onWire))
		n.stats.batchSizes.observe(uint64(len(recs)))
		n.stats.latency.observe(micros(time.Since(start)))
		if len(reply.Fenced) > 0 {
			ids := n.lost(reply.Fenced)
			b.markFenced(ids)
			reply.NeedFull = deleteAll(reply.NeedFull, b.fenced)
		}
		if len(reply.Refused) > 0 {
			if b.refused == nil {
				b.refused = make(map[string]bool, len(reply.Refused))
			}
			for _, id := range reply.Refused {
				b.refused[id] = true
			}
			// Sent again later, when the buddy may have room: not at once,
			// which would only spin.
			ids := slices.Clone(reply.Refused)
			time.AfterFunc(refusedRetry, func() { s.addResync(ids) })
		}
		if len(reply.NeedFull) == 0 {
			return total, nil
		}
		if attempt == 3 {
			return total, fmt.Errorf("buddy: %d sessions still out of step after full copies", len(reply.NeedFull))
		}
		recs = n.fullCopies(reply.NeedFull)
		n.stats.fullCopies.Add(uint64(len(recs)))
	}
}

// refusedRetry is when sessions a full buddy refused are sent again.
const refusedRetry = 5 * time.Second

// errBuddyFull is the cause of a commit whose session's copy the buddy
// refused: it holds the most copies it may (Config.MaxBackups).
var errBuddyFull = errors.New("buddy: the buddy holds the most backup copies it may")

// deleteAll removes from ids those in drop.
func deleteAll(ids []string, drop map[string]bool) []string {
	out := ids[:0]
	for _, id := range ids {
		if !drop[id] {
			out = append(out, id)
		}
	}
	return out
}

// ack is what Replicate returns in synchronous mode.
type ack struct {
	n       *Node
	b       *batch
	id      string // the session the commit changed
	err     error  // set when the change was not queued
	counted atomic.Bool
}

// Wait implements core.Ack. It may be called more than once (by the
// commit, and by requests that read what it wrote); the outcome is counted
// once.
func (a *ack) Wait(ctx context.Context) error {
	err := a.err
	if err == nil {
		select {
		case <-a.b.done: // acknowledged already: no timer needed
			err = a.b.err
		default:
			err = a.wait(ctx)
		}
		if isDone(a.b) && a.b.fenced[a.id] {
			return fmt.Errorf("%w: session %s is owned by another node now", core.ErrSessionMoved, a.id)
		}
		if err == nil && isDone(a.b) && a.b.refused[a.id] {
			err = errBuddyFull
		}
	}
	first := a.counted.CompareAndSwap(false, true)
	if err == nil {
		if first {
			a.n.stats.acks.Add(1)
		}
		return nil
	}
	if a.n.cfg.OnReplicationError == Degrade {
		if first {
			a.n.stats.degraded.Add(1)
			if errors.Is(err, errAlone) {
				a.n.stats.degradedAlone.Add(1)
			}
			a.n.degradedLog(err)
		}
		return nil
	}
	return fmt.Errorf("%w: %w", core.ErrReplication, err)
}

func isDone(b *batch) bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// wait blocks until the batch is done, its ReplicationTimeout has passed or
// ctx ends. The timeout is the batch's, shared by its commits, so it counts
// from the first of them that waited.
func (a *ack) wait(ctx context.Context) error {
	select {
	case <-a.b.done:
		return a.b.err
	case <-a.b.expiry(a.n.cfg.ReplicationTimeout):
		return fmt.Errorf("buddy: no acknowledgement within %v", 2*a.n.cfg.ReplicationTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}
