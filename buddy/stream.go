package buddy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsession/tandem/buddy/internal/h2stream"
	"github.com/tandemsession/tandem/buddy/wire"
)

// The batch stream: one long-lived full-duplex HTTP/2 request per buddy
// carries every batch and its reply (PROTOCOL.md, 1.1). A batch
// then costs one DATA frame each way instead of a request of its own
// (headers both ways, a stream, a handler goroutine): on a loaded node that
// is most of the CPU replication costs per batch.

var (
	// errStreamTimeout: the peer did not answer a batch in time.
	errStreamTimeout = errors.New("no answer within the replication timeout")
	// errPeerRejected: the peer refused a batch (its reason follows).
	errPeerRejected = errors.New("batch rejected")
	// errUnauthorized: the peer refused a batch as not authenticated: it
	// may have restarted under a new boot.
	errUnauthorized = errors.New("not authenticated")
	// errReplayed: the peer refused a message as a replay.
	errReplayed = errors.New("refused as a replay")
)

// streamOK is the status of a reply frame that carries a sealed reply; any
// other status is that of a rejection, which ends the stream.
const streamOK = http.StatusOK

// streamIdle is how long a stream may wait for its next frame (or the rest
// of one) before the receiver ends it. The sender opens a new one when it
// next has a batch.
const streamIdle = 2 * time.Minute

// serveStream handles a batch stream that came to net/http's server: on a
// connection whose first request was something else (the router sends the
// connections that begin with one to serveOwnStream). It answers 200 at
// once, then serves frames as serveFrames says.
func (n *Node) serveStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ProtoMajor != 2 {
		n.reject(w, &rejection{http.StatusMethodNotAllowed, RejectMethod, fmt.Errorf("%s over HTTP/%d", r.Method, r.ProtoMajor)})
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	end := &httpEnd{w: w, rc: rc, body: r.Body, ctx: r.Context()}
	// The read deadlines are one timer of the stream's own, reset twice a
	// frame, that ends the body's reads when it fires: on HTTP/2 every
	// SetReadDeadline is a round trip through the connection's goroutine
	// (and a timer of its own), which per frame cost more than the batch.
	// The timer may fire while the handler returns, and the response
	// writer must not be used once it has: ended says it did.
	end.timer = time.AfterFunc(n.cfg.ReplicationTimeout, func() {
		end.mu.Lock()
		defer end.mu.Unlock()
		if !end.ended {
			_ = rc.SetReadDeadline(time.Now().Add(-time.Second))
		}
	})
	defer func() {
		end.timer.Stop()
		end.mu.Lock()
		end.ended = true
		end.mu.Unlock()
	}()
	n.serveFrames(end)
}

// serveOwnStream serves the batch stream a connection of the replication
// port began with (see router), on the connection's own goroutine.
func (n *Node) serveOwnStream(c net.Conn, p *h2stream.Peeked) {
	st, err := p.Accept(http.StatusOK, contentType)
	if err != nil {
		n.log.Debug("buddy: batch stream not opened", "remote", c.RemoteAddr(), "err", err)
		return
	}
	end := &ownEnd{st: st, conn: c, timeout: n.cfg.ReplicationTimeout, ctx: n.ctx}
	n.serveFrames(end)
	_ = c.SetWriteDeadline(time.Now().Add(n.cfg.ReplicationTimeout))
	if st.End() == nil {
		st.Linger(min(n.cfg.ReplicationTimeout, streamLinger))
	}
}

// streamLinger bounds how long a batch stream that this node ended (a
// rejection, an idle stream) waits for its sender to close the connection.
const streamLinger = time.Second

// streamEnd is the receiving end of a batch stream: net/http's request and
// response writer, or a stream of the router's.
type streamEnd interface {
	io.Reader // the frames
	// readWithin sets how long the reads of the next bytes may take.
	readWithin(d time.Duration)
	// writeFrame sends one reply frame: uvarint status, uvarint length,
	// body.
	writeFrame(status int, body []byte) error
	// gone reports whether the stream ended from this side (the request's
	// context, the node's): a read that failed then is no error to answer.
	gone() bool
}

// serveFrames reads frames (uvarint length, sealed MsgBatch envelope) and
// answers each in order with a frame (uvarint status, uvarint length,
// bytes): 200 and the sealed reply, or a rejection's status and reason,
// after which it ends the stream.
//
// A frame's bytes are held only within a budget, taken before its body is
// read and given back once the envelope opened (or failed to): a frame
// beyond it is refused (503 busy). Until a frame of the stream opened, the
// budget is the node's one for unauthenticated bytes; after, it is another
// of the same size for streams that authenticated. So whoever can connect
// can hold at most MaxUnauthenticated bytes, and cannot starve the streams
// of the node's buddies that already run: at worst it delays a new one.
// The first frame must come within ReplicationTimeout (the sender opens a
// stream when it has a batch), and so must the rest of a frame once it
// began; between frames, a stream may idle for streamIdle.
func (n *Node) serveFrames(end streamEnd) {
	br := bufio.NewReaderSize(end, 512)
	bodyBuf, plainBuf := n.bufs.get(), n.bufs.get()
	defer n.bufs.put(bodyBuf)
	defer n.bufs.put(plainBuf)
	pool, idle := &n.unauth, n.cfg.ReplicationTimeout // the sender sends its first frame at once
	// A stream is opened by one run of its sender: before its first batch
	// is applied, this node learns that run's incarnation (a ping), so the
	// copies are recorded under it. Before, a sender that had just
	// restarted and replicated before this node pinged it had its new
	// copies recorded under its previous incarnation, and this node then
	// took the living owner for a restarted one that holds nothing, and
	// handed its copy out: two owners, and a logout undone.
	learned := false
	onBatch := func(from string, payload []byte) ([]byte, error) {
		if !learned {
			learned = true
			n.pingNow(from)
		}
		return n.onBatch(from, payload)
	}
	for {
		end.readWithin(idle)
		size, err := wire.ReadFrameSize(br, n.cfg.MaxBodySize)
		switch {
		case errors.Is(err, wire.ErrFrameTooLarge):
			n.rejectFrame(end, &rejection{http.StatusRequestEntityTooLarge, RejectTooLarge, err})
			return
		case err != nil:
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !end.gone() {
				n.rejectFrame(end, &rejection{http.StatusBadRequest, RejectMalformed, err})
			}
			return // EOF: the sender closed the stream; or it stayed idle
		}
		if !pool.take(size) {
			n.rejectFrame(end, &rejection{http.StatusServiceUnavailable, RejectBusy,
				fmt.Errorf("a frame of %d bytes would exceed the %d bytes held for unauthenticated requests", size, pool.max)})
			return
		}
		end.readWithin(n.cfg.ReplicationTimeout)
		body, err := readExactly((*bodyBuf)[:0], br, uint64(size))
		*bodyBuf = body
		if err != nil {
			pool.give(size)
			if !end.gone() && !errors.Is(err, os.ErrDeadlineExceeded) {
				n.rejectFrame(end, &rejection{http.StatusBadRequest, RejectMalformed, fmt.Errorf("stream frame: %w", err)})
			}
			return
		}
		reply, rej := n.serve(wire.MsgBatch, onBatch, body, plainBuf, (*bodyBuf)[:0], func() { pool.give(size) })
		*bodyBuf = reply
		if rej != nil {
			n.rejectFrame(end, rej)
			return
		}
		pool, idle = &n.authed, n.cfg.streamIdle
		if err := end.writeFrame(streamOK, reply); err != nil {
			return
		}
	}
}

// httpEnd is a batch stream served by net/http.
type httpEnd struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	body  io.Reader
	ctx   context.Context
	timer *time.Timer
	mu    sync.Mutex
	ended bool // the handler returned: the timer must not touch rc
}

func (e *httpEnd) Read(p []byte) (int, error) { return e.body.Read(p) }
func (e *httpEnd) readWithin(d time.Duration) { e.timer.Reset(d) }
func (e *httpEnd) gone() bool                 { return e.ctx.Err() != nil }

func (e *httpEnd) writeFrame(status int, body []byte) error {
	var hdr [wire.MaxFrameHeader]byte
	if _, err := e.w.Write(wire.AppendReplyHeader(hdr[:0], status, len(body))); err != nil { // the response writer buffers: no extra packet
		return err
	}
	if _, err := e.w.Write(body); err != nil {
		return err
	}
	return e.rc.Flush()
}

// ownEnd is a batch stream served on a connection of its own.
type ownEnd struct {
	st      *h2stream.Stream
	conn    net.Conn
	timeout time.Duration
	ctx     context.Context
	frame   []byte // the reply frame being written: one DATA frame
}

func (e *ownEnd) Read(p []byte) (int, error) { return e.st.Read(p) }
func (e *ownEnd) gone() bool {
	return e.ctx.Err() != nil || errors.Is(e.st.Err(), h2stream.ErrReset) // the client canceled
}

func (e *ownEnd) readWithin(d time.Duration) { _ = e.conn.SetReadDeadline(time.Now().Add(d)) }

func (e *ownEnd) writeFrame(status int, body []byte) error {
	e.frame = append(wire.AppendReplyHeader(e.frame[:0], status, len(body)), body...)
	if _, err := e.st.Write(e.frame); err != nil {
		return err
	}
	_ = e.conn.SetWriteDeadline(time.Now().Add(e.timeout))
	return e.st.Flush()
}

// readExactly appends the next size bytes of r to dst; fewer is an error.
// It reserves size bytes at once: the caller holds them within a budget, and
// a buffer grown as the bytes arrive would cost twice as much memory. (The
// pages of a large buffer are only touched, and so resident, as the bytes
// arrive.)
func readExactly(dst []byte, r io.Reader, size uint64) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, int(size))
	_, err := io.ReadFull(r, dst[start:start+int(size)])
	if err != nil {
		return dst[:start], err
	}
	return dst[:start+int(size)], nil
}

// rejectFrame counts and logs a rejection and sends it as the stream's last
// frame.
func (n *Node) rejectFrame(end streamEnd, rej *rejection) {
	n.stats.reject(rej.reason)
	n.logs.warn(n.log, rej.reason, "buddy: stream request rejected", "reason", rej.reason, "err", rej.err)
	_ = end.writeFrame(rej.status, []byte(rej.reason))
}

// batchStream is the sender's end of a batch stream to one peer. Only the
// sender's goroutine uses it, but for close.
type batchStream struct {
	to     Peer
	used   bool // a round trip went through: a failure may be the peer's idle close
	st     *h2stream.Stream
	br     *bufio.Reader
	cancel context.CancelFunc
}

// openStream starts a batch stream to peer to on a connection of its own;
// it returns once the peer answered 200, or fails within
// ReplicationTimeout.
//
// ctx and cancel are the stream's: canceling ends the opening too.
func (n *Node) openStream(ctx context.Context, cancel context.CancelFunc, to Peer) (*batchStream, error) {
	fail := func(err error) (*batchStream, error) {
		cancel()
		return nil, fmt.Errorf("buddy: stream to %s: %w", to.ID, err)
	}
	dctx, dcancel := context.WithTimeout(ctx, n.cfg.ReplicationTimeout)
	defer dcancel()
	c, err := n.cfg.Dial(dctx, "tcp", to.Addr)
	if err != nil {
		return fail(err)
	}
	// Once the stream's context ends (close, a timeout, the node's Close),
	// its reads and writes fail at once: the TCP connection closes (a TLS
	// close would first try to write its alert).
	raw := c
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	_ = c.SetDeadline(time.Now().Add(n.cfg.ReplicationTimeout))
	if n.tlsClient != nil {
		tc := tls.Client(c, n.tlsClientFor(to.Addr))
		if err := tc.HandshakeContext(dctx); err != nil {
			stop()
			raw.Close()
			return fail(err)
		}
		c = tc
	}
	st, err := h2stream.Dial(c, n.scheme, to.Addr, pathStream, contentType)
	if err == nil && st.Status() != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(st, 200))
		err = fmt.Errorf("%s answered %d: %s", to.ID, st.Status(), data)
	}
	if err != nil {
		stop()
		raw.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(dctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%v): %w", errStreamTimeout, n.cfg.ReplicationTimeout, err)
		}
		return fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	return &batchStream{to: to, st: st, br: bufio.NewReader(st), cancel: cancel}, nil
}

// close ends the stream; the peer sees the end of its request body, and a
// roundTrip waiting on the stream returns.
func (st *batchStream) close() { st.cancel() }

// roundTrip sends one frame (uvarint length, sealed batch envelope) and
// returns the sealed reply. After an error the stream is unusable: close
// it. A peer that does not answer within timeout has the stream torn down
// under it. frame may be reused once roundTrip returns.
func (st *batchStream) roundTrip(frame []byte, maxReply int, timeout time.Duration) ([]byte, error) {
	var timedOut atomic.Bool
	t := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		st.close()
	})
	defer t.Stop()
	fail := func(err error) ([]byte, error) {
		if timedOut.Load() {
			err = fmt.Errorf("%w (%v)", errStreamTimeout, timeout)
		}
		return nil, fmt.Errorf("buddy: stream to %s: %w", st.to.ID, err)
	}
	// One Write: one DATA frame where it fits.
	if _, err := st.st.Write(frame); err != nil {
		return fail(err)
	}
	if err := st.st.Flush(); err != nil {
		return fail(err)
	}
	status, size, err := wire.ReadReplyHeader(st.br, maxReply)
	if err != nil {
		return fail(err)
	}
	data, err := readExactly(nil, st.br, uint64(size))
	if err != nil {
		return fail(err)
	}
	if status != streamOK {
		err := fmt.Errorf("buddy: %s answered %d: %s: %w", st.to.ID, status, data[:min(len(data), 200)], errPeerRejected)
		switch {
		case status == http.StatusUnauthorized:
			err = fmt.Errorf("%w (%w)", err, errUnauthorized)
		case status == http.StatusConflict && string(data) == RejectReplay:
			err = fmt.Errorf("%w (%w)", err, errReplayed)
		}
		return nil, err
	}
	st.used = true
	return data, nil
}
