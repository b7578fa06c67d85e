package buddy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tandemsession/tandem/compress"
)

// Paths of the replication endpoints. Every request body is one sealed
// envelope; every 200 response body is one sealed reply. See PROTOCOL.md.
const (
	pathBatch    = "/tandem/v1/batch"
	pathFetch    = "/tandem/v1/fetch"
	pathPing     = "/tandem/v1/ping"
	pathTransfer = "/tandem/v1/transfer"
	pathLeave    = "/tandem/v1/leave"
)

const contentType = "application/x-tandem"

// replyType maps a request type to the type of its reply.
var replyType = map[MsgType]MsgType{
	MsgBatch:    MsgBatchReply,
	MsgFetch:    MsgFetchReply,
	MsgPing:     MsgPong,
	MsgTransfer: MsgTransferReply,
	MsgLeave:    MsgLeaveReply,
}

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(pathBatch, n.endpoint(MsgBatch, n.onBatch))
	mux.Handle(pathFetch, n.endpoint(MsgFetch, n.onFetch))
	mux.Handle(pathPing, n.endpoint(MsgPing, n.onPing))
	mux.Handle(pathTransfer, n.endpoint(MsgTransfer, n.onTransfer))
	mux.Handle(pathLeave, n.endpoint(MsgLeave, n.onLeave))
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

// endpoint wraps a handler of opened payloads: it bounds and opens the
// request, authenticates the sender, rejects replays, and seals the reply.
func (n *Node) endpoint(typ MsgType, handle func(from string, payload []byte) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.ProtoMajor != 2 {
			n.reject(w, &rejection{http.StatusMethodNotAllowed, RejectMethod, fmt.Errorf("%s over HTTP/%d", r.Method, r.ProtoMajor)})
			return
		}
		bodyBuf, plainBuf := n.bufs.get(), n.bufs.get()
		defer n.bufs.put(bodyBuf)
		defer n.bufs.put(plainBuf)
		body, err := appendBody((*bodyBuf)[:0], http.MaxBytesReader(w, r.Body, int64(n.cfg.MaxBodySize)), r.ContentLength)
		*bodyBuf = body
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				n.reject(w, &rejection{http.StatusRequestEntityTooLarge, RejectTooLarge, err})
			} else {
				n.reject(w, &rejection{http.StatusBadRequest, RejectMalformed, err})
			}
			return
		}
		n.stats.bytesReceived.Add(uint64(len(body)))
		h, payload, err := n.sealer.Open((*plainBuf)[:0], body)
		*plainBuf = payload
		if rej := openRejection(err); rej != nil {
			n.reject(w, rej)
			return
		}
		if h.Type != typ {
			n.reject(w, &rejection{http.StatusBadRequest, RejectMalformed, fmt.Errorf("message type %d on %s", h.Type, r.URL.Path)})
			return
		}
		win, known := n.windows.get(h.From)
		if !known {
			n.reject(w, &rejection{http.StatusForbidden, RejectUnknown, fmt.Errorf("%w: %q", ErrUnknownNode, h.From)})
			return
		}
		if !win.Accept(h.Seq) {
			n.reject(w, &rejection{http.StatusConflict, RejectReplay, fmt.Errorf("%w: %q seq %d", ErrReplay, h.From, h.Seq)})
			return
		}
		reply, err := handle(h.From, payload)
		if err != nil {
			var rej *rejection
			if !errors.As(err, &rej) {
				rej = &rejection{http.StatusInternalServerError, "internal", err}
			}
			n.reject(w, rej)
			return
		}
		w.Header().Set("Content-Type", contentType)
		*bodyBuf = n.sealer.Seal(body[:0], h.From, replyType[typ], h.Seq, reply) // the body is spent
		_, _ = w.Write(*bodyBuf)
	})
}

func openRejection(err error) *rejection {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrVersion):
		return &rejection{http.StatusBadRequest, RejectVersion, err}
	case errors.Is(err, ErrAuth):
		return &rejection{http.StatusUnauthorized, RejectAuth, err}
	default:
		return &rejection{http.StatusBadRequest, RejectMalformed, err}
	}
}

func (n *Node) reject(w http.ResponseWriter, rej *rejection) {
	n.stats.reject(rej.reason)
	n.log.Warn("buddy: request rejected", "reason", rej.reason, "err", rej.err)
	http.Error(w, rej.reason, rej.status)
}

// decodeBatch decompresses and decodes a batch payload.
func (n *Node) decodeBatch(payload []byte) ([]Record, error) {
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
	recs, err := DecodeBatch(raw, n.cfg.Limits)
	switch {
	case errors.Is(err, ErrVersion):
		return nil, &rejection{http.StatusBadRequest, RejectVersion, err}
	case errors.Is(err, ErrLimit):
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
	var reply BatchReply
	for _, r := range recs {
		switch n.backups.apply(from, r) {
		case applied:
			n.stats.recordsApplied.Add(1)
		case ignored:
			n.stats.recordsIgnored.Add(1)
		case gap:
			n.stats.gapsReported.Add(1)
			reply.NeedFull = append(reply.NeedFull, r.Change.ID)
		}
	}
	return AppendReply(nil, reply), nil
}

// sendBatch encodes, compresses, seals and posts recs to peer. It returns
// the reply and the raw and wire sizes.
func (n *Node) sendBatch(to Peer, recs []Record) (reply BatchReply, raw, wire int, err error) {
	encBuf, payloadBuf := n.bufs.get(), n.bufs.get()
	defer n.bufs.put(encBuf)
	defer n.bufs.put(payloadBuf)
	enc := AppendBatch((*encBuf)[:0], recs)
	payload := n.comp.Encode((*payloadBuf)[:0], enc)
	*encBuf, *payloadBuf = enc, payload
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicationTimeout)
	defer cancel()
	out, wire, err := n.call(ctx, to, pathBatch, MsgBatch, payload)
	if err != nil {
		return reply, len(enc), wire, err
	}
	reply, err = DecodeReply(out, n.cfg.Limits)
	return reply, len(enc), wire, err
}

// call seals payload for peer, posts it and opens the reply. The sealed
// body is not pooled: the transport may still read it after Do returns.
func (n *Node) call(ctx context.Context, to Peer, path string, typ MsgType, payload []byte) ([]byte, int, error) {
	seq := n.seq.Add(1)
	body := n.sealer.Seal(nil, to.ID, typ, seq, payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.scheme+"://"+to.Addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, len(body), err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, len(body), err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(n.cfg.MaxBodySize)+1))
	if err != nil {
		return nil, len(body), err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, len(body), fmt.Errorf("buddy: %s answered %d: %s", to.ID, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
	}
	if len(data) > n.cfg.MaxBodySize {
		return nil, len(body), fmt.Errorf("buddy: reply from %s exceeds %d bytes", to.ID, n.cfg.MaxBodySize)
	}
	h, out, err := n.sealer.Open(nil, data)
	if err != nil {
		return nil, len(body), fmt.Errorf("buddy: reply from %s: %w", to.ID, err)
	}
	if h.From != to.ID || h.Seq != seq || h.Type != replyType[typ] {
		return nil, len(body), fmt.Errorf("buddy: reply from %s does not match the request: %w", to.ID, ErrAuth)
	}
	return out, len(body), nil
}
