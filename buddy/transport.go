package buddy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
)

// Paths of the replication endpoints. Batches travel on the stream (see
// stream.go); on the others every request body is one sealed envelope and
// every 200 response body is one sealed reply. See PROTOCOL.md.
const (
	pathFetch    = "/tandem/v1/fetch"
	pathPing     = "/tandem/v1/ping"
	pathTransfer = "/tandem/v1/transfer"
	pathLeave    = "/tandem/v1/leave"
	pathStream   = "/tandem/v1/stream"
	pathProbe    = "/tandem/v1/probe"
	pathRumour   = "/tandem/v1/rumour"
)

const contentType = "application/x-tandem"

// replyType maps a request type to the type of its reply.
var replyType = map[wire.MsgType]wire.MsgType{
	wire.MsgBatch:    wire.MsgBatchReply,
	wire.MsgFetch:    wire.MsgFetchReply,
	wire.MsgPing:     wire.MsgPong,
	wire.MsgTransfer: wire.MsgTransferReply,
	wire.MsgLeave:    wire.MsgLeaveReply,
	wire.MsgUsers:    wire.MsgUsersReply,
	wire.MsgProbe:    wire.MsgProbeReply,
	wire.MsgRumour:   wire.MsgRumourReply,
}

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(pathFetch, n.endpoint(wire.MsgFetch, n.onFetch))
	mux.Handle(pathPing, n.endpoint(wire.MsgPing, n.onPing))
	mux.Handle(pathTransfer, n.endpoint(wire.MsgTransfer, n.onTransfer))
	mux.Handle(pathLeave, n.endpoint(wire.MsgLeave, n.onLeave))
	mux.Handle(pathUsers, n.endpoint(wire.MsgUsers, n.onUsers))
	mux.HandleFunc(pathStream, n.serveStream)
	mux.Handle(pathProbe, n.endpoint(wire.MsgProbe, n.onProbe))
	mux.Handle(pathRumour, n.endpoint(wire.MsgRumour, n.onRumour))
	return mux
}

// rejection is a request refused before or while it was handled.
type rejection struct {
	status int
	reason string
	err    error
}

// malformed rejects a payload that cannot be parsed.
func malformed(err error) *rejection {
	return &rejection{http.StatusBadRequest, RejectMalformed, err}
}

func (r *rejection) Error() string { return fmt.Sprintf("%s: %v", r.reason, r.err) }

// handler handles the opened payload of one request from a peer and
// returns the reply payload.
type handler func(from string, payload []byte) ([]byte, error)

// maxCallBody bounds the body of a request other than a batch stream
// (fetch, ping, transfer, leave): all of them are small. At most maxCalls
// of them are held at once before they authenticate; they have a budget of
// their own, so that frames held on batch streams cannot keep pings and
// fetches out.
const (
	maxCallBody = 4 << 10
	maxCalls    = 1024
)

// endpoint wraps a handler of opened payloads: it bounds and opens the
// request, authenticates the sender, rejects replays, and seals the reply.
// The body must come within ReplicationTimeout, and is held within the
// node's budget of unauthenticated bytes.
func (n *Node) endpoint(typ wire.MsgType, handle handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.ProtoMajor != 2 {
			n.reject(w, &rejection{http.StatusMethodNotAllowed, RejectMethod, fmt.Errorf("%s over HTTP/%d", r.Method, r.ProtoMajor)})
			return
		}
		if !n.calls.take(maxCallBody) {
			n.reject(w, &rejection{http.StatusServiceUnavailable, RejectBusy, fmt.Errorf("the %d requests that may wait for their body are waiting", maxCalls)})
			return
		}
		released := false
		release := func() {
			if !released {
				released = true
				n.calls.give(maxCallBody)
			}
		}
		defer release()
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(n.cfg.ReplicationTimeout))
		bodyBuf, plainBuf := n.bufs.get(), n.bufs.get()
		defer n.bufs.put(bodyBuf)
		defer n.bufs.put(plainBuf)
		body, err := appendBody((*bodyBuf)[:0], http.MaxBytesReader(w, r.Body, maxCallBody), min(r.ContentLength, maxCallBody))
		*bodyBuf = body
		if err != nil {
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &tooBig):
				n.reject(w, &rejection{http.StatusRequestEntityTooLarge, RejectTooLarge, err})
			case errors.Is(err, os.ErrDeadlineExceeded):
				n.reject(w, &rejection{http.StatusRequestTimeout, RejectSlow, err})
			default:
				n.reject(w, &rejection{http.StatusBadRequest, RejectMalformed, err})
			}
			return
		}
		// The body is spent once opened: the sealed reply reuses it.
		reply, rej := n.serve(typ, handle, body, plainBuf, body[:0], release)
		if rej != nil {
			n.reject(w, rej)
			return
		}
		*bodyBuf = reply
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(reply)
	})
}

// serve opens one sealed request of type typ (into plain), authenticates
// its sender, rejects replays, runs handle and appends the sealed reply to
// dst.
// authenticated is called once the envelope opened, or failed to: its
// bytes are no longer held for an unauthenticated peer.
func (n *Node) serve(typ wire.MsgType, handle handler, body []byte, plain *[]byte, dst []byte, authenticated func()) ([]byte, *rejection) {
	n.stats.bytesReceived.Add(uint64(len(body)))
	h, payload, err := n.sealer.Open((*plain)[:0], body, n.boot)
	if errors.Is(err, wire.ErrAuth) && typ == wire.MsgPing {
		// A ping from a peer that does not know this node's boot yet (it
		// or this node just started): answered, so that it learns the
		// boot, but it changes nothing here.
		if h, payload, err = n.sealer.Open((*plain)[:0], body, 0); err == nil {
			handle = n.onHello
		}
	}
	authenticated()
	*plain = payload
	if rej := openRejection(err); rej != nil {
		return dst, rej
	}
	if h.Type != typ {
		return dst, &rejection{http.StatusBadRequest, RejectMalformed, fmt.Errorf("message type %v where %v belongs", h.Type, typ)}
	}
	win, known := n.windows.get(h.From)
	if !known {
		// Someone holding the cluster key that this node does not know of:
		// a new node, maybe, that Discovery lists already.
		n.discoverSoon()
		return dst, &rejection{http.StatusForbidden, RejectUnknown, fmt.Errorf("%w: %q", wire.ErrUnknownNode, h.From)}
	}
	if now := time.Now(); h.Seq > uint64(now.Add(maxClockSkew).UnixNano()) || h.Seq < uint64(now.Add(-maxClockSkew).UnixNano()) {
		// Senders count from their clock: a number far from this one's is
		// a message sealed long ago, or forged, or the clocks are apart.
		return dst, &rejection{http.StatusConflict, RejectReplay, fmt.Errorf("%w: %q seq %d is more than %v from this node's clock", wire.ErrReplay, h.From, h.Seq, maxClockSkew)}
	}
	if !win.Accept(h.Seq) {
		return dst, &rejection{http.StatusConflict, RejectReplay, fmt.Errorf("%w: %q seq %d", wire.ErrReplay, h.From, h.Seq)}
	}
	if typ != wire.MsgPing && typ != wire.MsgLeave {
		// Fresh, authenticated traffic: its sender is alive, whatever this
		// node believed (it may have restarted and not pinged us yet).
		n.applyChange(h.From, n.view.revive(h.From))
	}
	reply, err := handle(h.From, payload)
	if err != nil {
		var rej *rejection
		if !errors.As(err, &rej) {
			rej = &rejection{http.StatusInternalServerError, "internal", err}
		}
		return dst, rej
	}
	return n.sealer.Seal(dst, h.From, replyType[typ], h.Seq, 0, reply), nil
}

// maxClockSkew is how far a peer's clock may be from this node's, either
// way (a message's time in flight included). A sequence number further
// from this node's clock is refused: a message sealed longer ago than that
// whatever the replay window holds, or a forged number from far ahead
// before it takes a place in the window. A timestamp further ahead is taken
// as now (clampTimes).
const maxClockSkew = time.Minute

// nextSeq returns the sequence number of this node's next message: one more
// than the last, and at least the clock's time in nanoseconds.
func (n *Node) nextSeq() uint64 {
	for {
		last := n.seq.Load()
		next := max(last+1, uint64(time.Now().UnixNano()))
		if n.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

func openRejection(err error) *rejection {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, wire.ErrVersion):
		return &rejection{http.StatusBadRequest, RejectVersion, err}
	case errors.Is(err, wire.ErrAuth):
		return &rejection{http.StatusUnauthorized, RejectAuth, err}
	default:
		return &rejection{http.StatusBadRequest, RejectMalformed, err}
	}
}

func (n *Node) reject(w http.ResponseWriter, rej *rejection) {
	n.stats.reject(rej.reason)
	n.logs.warn(n.log, rej.reason, "buddy: request rejected", "reason", rej.reason, "err", rej.err)
	http.Error(w, rej.reason, rej.status)
}

// decodeBatch decompresses and decodes a batch payload.
func (n *Node) decodeBatch(payload []byte) ([]wire.Record, error) {
	// What a batch decodes to is held within the node's decoding budget,
	// taken for the most it may decode to: a flood of frames that claim
	// large contents cannot make the node hold more.
	if !n.decoding.take(n.cfg.MaxDecodedSize) {
		return nil, &rejection{http.StatusServiceUnavailable, RejectBusy, fmt.Errorf("the %d bytes for decoding batches are taken", n.decoding.max)}
	}
	defer n.decoding.give(n.cfg.MaxDecodedSize)
	buf := n.bufs.get()
	defer n.bufs.put(buf)
	raw, err := n.comp.Decode((*buf)[:0], payload, n.cfg.MaxDecodedSize)
	*buf = raw
	if errors.Is(err, compress.ErrTooLarge) {
		return nil, &rejection{http.StatusRequestEntityTooLarge, RejectBomb, err}
	}
	if err != nil {
		return nil, &rejection{http.StatusBadRequest, RejectMalformed, err}
	}
	recs, err := wire.DecodeBatch(raw, n.cfg.Limits)
	switch {
	case errors.Is(err, wire.ErrVersion):
		return nil, &rejection{http.StatusBadRequest, RejectVersion, err}
	case errors.Is(err, wire.ErrLimit):
		return nil, &rejection{http.StatusRequestEntityTooLarge, RejectTooLarge, err}
	case err != nil:
		return nil, &rejection{http.StatusBadRequest, RejectMalformed, err}
	}
	return recs, nil
}

// onBatch applies a batch of records from an owner.
func (n *Node) onBatch(from string, payload []byte) ([]byte, error) {
	recs, err := n.decodeBatch(payload)
	if err != nil {
		return nil, err
	}
	return wire.AppendReply(nil, n.applyBatch(from, recs)), nil
}

// sendBatch encodes, compresses and seals recs and sends them to peer on
// the sender's batch stream. It returns the reply and the raw and wire
// sizes.
func (s *sender) sendBatch(to Peer, recs []wire.Record) (reply wire.BatchReply, raw, onWire int, err error) {
	n := s.n
	encBuf, payloadBuf, frameBuf := n.bufs.get(), n.bufs.get(), n.bufs.get()
	defer n.bufs.put(encBuf)
	defer n.bufs.put(payloadBuf)
	defer n.bufs.put(frameBuf)
	enc := wire.AppendBatch((*encBuf)[:0], recs)
	payload := n.comp.Encode((*payloadBuf)[:0], enc)
	*encBuf, *payloadBuf = enc, payload
	onWire = n.sealer.Overhead(to.ID) + len(payload)
	var out []byte
	var seq uint64
	boot, err := n.bootOf(to)
	if err != nil {
		return reply, len(enc), 0, err
	}
	relearned := false
	for {
		st, err := s.streamTo(to)
		if err != nil {
			return reply, len(enc), 0, err
		}
		seq = n.nextSeq()
		frame := binary.AppendUvarint((*frameBuf)[:0], uint64(onWire))
		frame = n.sealer.Seal(frame, to.ID, wire.MsgBatch, seq, boot, payload)
		*frameBuf = frame
		out, err = st.roundTrip(frame, n.cfg.MaxBodySize, n.cfg.ReplicationTimeout)
		if err == nil {
			break
		}
		s.closeStream()
		if errors.Is(err, errReplayed) && !relearned {
			relearned = true // arrived after too many later messages: resend once, numbered anew
			continue
		}
		if errors.Is(err, errUnauthorized) && !relearned {
			// The buddy may have restarted under a new boot since this
			// node learned it: learn it again, and resend once.
			relearned = true
			n.windows.forgetBoot(to.ID, boot)
			if boot, err = n.bootOf(to); err != nil {
				return reply, len(enc), onWire, err
			}
			continue
		}
		if !st.used || errors.Is(err, errStreamTimeout) || errors.Is(err, errPeerRejected) || s.buddy().ID != to.ID {
			return reply, len(enc), onWire, err // (a buddy no longer the buddy: its stream was ended on purpose)
		}
		// A stream that worked before may have been ended by the peer
		// while idle: resend once on a new one. Resending is safe: a
		// record the buddy already holds is ignored by version.
	}
	h, plain, err := n.sealer.Open(nil, out, 0)
	if err != nil {
		return reply, len(enc), onWire, fmt.Errorf("buddy: reply from %s: %w", to.ID, err)
	}
	if h.From != to.ID || h.Seq != seq || h.Type != wire.MsgBatchReply {
		return reply, len(enc), onWire, fmt.Errorf("buddy: reply from %s does not match the request: %w", to.ID, wire.ErrAuth)
	}
	reply, err = wire.DecodeReply(plain, n.cfg.Limits)
	return reply, len(enc), onWire, err
}

// call seals payload for peer, posts it and opens the reply. The sealed
// body is not pooled: the transport may still read it after Do returns.
//
// Every request is sealed for the peer's boot (PROTOCOL.md section 6): a
// ping may go before this node knows it (and teaches it), any other
// request waits for a ping first.
func (n *Node) call(ctx context.Context, to Peer, path string, typ wire.MsgType, payload []byte) ([]byte, int, error) {
	knewBoot := n.windows.boot(to.ID) != 0
	out, size, err := n.callOnce(ctx, to, path, typ, payload)
	switch {
	case errors.Is(err, errUnauthorized) && (typ != wire.MsgPing || knewBoot):
		// The peer restarted under a new boot since this node learned it:
		// learn it again (a ping, sealed now without a boot, as to a peer
		// never met), and send once more. A ping refused without a boot is
		// not resent: the peer holds another key.
		out, size, err = n.callOnce(ctx, to, path, typ, payload)
	case errors.Is(err, errReplayed):
		// It arrived after too many later messages: numbered anew, once.
		out, size, err = n.callOnce(ctx, to, path, typ, payload)
	}
	return out, size, err
}

func (n *Node) callOnce(ctx context.Context, to Peer, path string, typ wire.MsgType, payload []byte) ([]byte, int, error) {
	boot := n.windows.boot(to.ID)
	if boot == 0 && typ != wire.MsgPing {
		var err error
		if boot, err = n.bootOf(to); err != nil {
			return nil, 0, err
		}
	}
	seq := n.nextSeq()
	body := n.sealer.Seal(nil, to.ID, typ, seq, boot, payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.scheme+"://"+to.Addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, len(body), err
	}
	req.Header.Set("Content-Type", contentType)
	membership := typ == wire.MsgPing || typ == wire.MsgProbe || typ == wire.MsgRumour
	if membership {
		n.stats.memberMsgs.Add(1)
		n.stats.memberBytes.Add(uint64(len(body)))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, len(body), err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(n.cfg.MaxBodySize)+1))
	if membership {
		n.stats.memberBytes.Add(uint64(len(data)))
	}
	if err != nil {
		return nil, len(body), err
	}
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("buddy: %s answered %d: %s", to.ID, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			// It may have restarted under a new boot: learn it again.
			n.windows.forgetBoot(to.ID, boot)
			err = fmt.Errorf("%w (%w)", err, errUnauthorized)
		case resp.StatusCode == http.StatusConflict && string(bytes.TrimSpace(data)) == RejectReplay:
			err = fmt.Errorf("%w (%w)", err, errReplayed)
		}
		return nil, len(body), err
	}
	if len(data) > n.cfg.MaxBodySize {
		return nil, len(body), fmt.Errorf("buddy: reply from %s exceeds %d bytes", to.ID, n.cfg.MaxBodySize)
	}
	h, out, err := n.sealer.Open(nil, data, 0)
	if err != nil {
		return nil, len(body), fmt.Errorf("buddy: reply from %s: %w", to.ID, err)
	}
	if h.From != to.ID || h.Seq != seq || h.Type != replyType[typ] {
		return nil, len(body), fmt.Errorf("buddy: reply from %s does not match the request: %w", to.ID, wire.ErrAuth)
	}
	return out, len(body), nil
}
