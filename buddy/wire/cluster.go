package wire

// The payloads of the cluster messages (PROTOCOL.md section 4b): ping and
// pong, fetch and its reply, transfer, leave. None is compressed.

import (
	"encoding/binary"
	"fmt"

	"github.com/tandemsession/tandem/core"
)

// MaxCookieKeys is the most cookie key fingerprints a ping carries.
const MaxCookieKeys = 16

// Ping is the payload of MsgPing and MsgPong: who the sender is this run
// and what it is configured with, so that peers spot restarts, drains and
// misconfiguration.
type Ping struct {
	// Incarnation is the sender's start time in Unix nanoseconds: a new
	// value means it restarted with nothing.
	Incarnation uint64
	// Boot is the sender's boot nonce, random for every run: requests to
	// it are sealed for it (Sealer.Seal).
	Boot uint64
	// Draining: the sender is handing its sessions over and leaving.
	Draining bool
	// Settings fingerprints the settings every node must share (cookie
	// name, idle timeout, lifetime); 0 while the sender has no manager.
	Settings uint64
	// CookieKeys fingerprints the sender's cookie key pairs, signing pair
	// first; empty while the sender has no manager.
	CookieKeys []uint64
}

// AppendPing appends the encoding of p: incarnation (uvarint), state (one
// byte, 0 serving or 1 draining), boot and settings (8 bytes each,
// big-endian), the number of cookie keys (one byte) and each key's
// fingerprint (8 bytes).
func AppendPing(dst []byte, p Ping) []byte {
	dst = binary.AppendUvarint(dst, p.Incarnation)
	state := byte(0)
	if p.Draining {
		state = 1
	}
	dst = append(dst, state)
	dst = binary.BigEndian.AppendUint64(dst, p.Boot)
	dst = binary.BigEndian.AppendUint64(dst, p.Settings)
	keys := p.CookieKeys[:min(len(p.CookieKeys), MaxCookieKeys)]
	dst = append(dst, byte(len(keys)))
	for _, k := range keys {
		dst = binary.BigEndian.AppendUint64(dst, k)
	}
	return dst
}

// DecodePing decodes what AppendPing encodes. Errors wrap ErrMalformed.
func DecodePing(b []byte) (Ping, error) {
	var p Ping
	inc, k := binary.Uvarint(b)
	if k <= 0 || len(b) < k+1+16+1 || b[k] > 1 {
		return Ping{}, fmt.Errorf("%w: ping payload", ErrMalformed)
	}
	p.Incarnation, p.Draining = inc, b[k] == 1
	b = b[k+1:]
	p.Boot = binary.BigEndian.Uint64(b)
	p.Settings = binary.BigEndian.Uint64(b[8:])
	n := int(b[16])
	b = b[17:]
	if n > MaxCookieKeys || len(b) != 8*n {
		return Ping{}, fmt.Errorf("%w: ping payload with %d cookie keys in %d bytes", ErrMalformed, n, len(b))
	}
	if n > 0 {
		p.CookieKeys = make([]uint64, n)
		for i := range p.CookieKeys {
			p.CookieKeys[i] = binary.BigEndian.Uint64(b[8*i:])
		}
	}
	return p, nil
}

// FetchStatus is the first byte of a fetch reply.
type FetchStatus byte

// Fetch reply statuses.
const (
	// FetchNone: the node holds no copy and knows of none.
	FetchNone FetchStatus = 0
	// FetchFound: the node gave its copy up; a full record follows.
	FetchFound FetchStatus = 1
	// FetchRedirect: ask the node named next instead.
	FetchRedirect FetchStatus = 2
	// FetchPending: the node holds the session but cannot hand it over
	// this moment (it is fetching it, or handing it over already): ask
	// again shortly.
	FetchPending FetchStatus = 3
	// FetchEnded: the session ended (logged out, or its ID replaced at
	// login): stop looking, any copy elsewhere is a stale leftover.
	FetchEnded FetchStatus = 4
	// fetchFoundBackup is FetchFound on the wire when the copy is a
	// backup copy whose owner is gone (FetchReply.Backup); decoded as
	// FetchFound.
	fetchFoundBackup FetchStatus = 5
)

// String returns the status's name.
func (s FetchStatus) String() string {
	switch s {
	case FetchNone:
		return "none"
	case FetchFound:
		return "found"
	case FetchRedirect:
		return "redirect"
	case FetchPending:
		return "pending"
	case FetchEnded:
		return "ended"
	}
	return fmt.Sprintf("fetch-status(%d)", byte(s))
}

// FetchReply is the payload of MsgFetchReply.
type FetchReply struct {
	Status FetchStatus
	// Copy is the session's full copy (FetchFound), with the epoch under
	// which the giver held it.
	Copy *core.Change
	// Redirect is the node to ask instead (FetchRedirect).
	Redirect string
	// Backup: the copy (FetchFound) is a backup copy handed out because
	// its owner is gone (a failover), not the owner's own session (a
	// handover). Sent as status 5.
	Backup bool
}

// Fetch is the payload of MsgFetch: a node asks for a session.
type Fetch struct {
	// Incarnation is the asker's: a node asked by the owner of a copy it
	// holds hands the copy back only to a new incarnation of it (one that
	// restarted with nothing); the same incarnation lost the session.
	Incarnation uint64
	// Proof is the session cookie the asker's request brought, at most
	// MaxProof bytes: the holder checks it is a cookie of the session.
	Proof string
	// ID is the session ID, 1 to MaxIDLen bytes.
	ID string
}

// MaxProof bounds a fetch's proof (a session cookie's value).
const MaxProof = 1024

// AppendFetch appends the encoding of f: the incarnation (uvarint), the
// proof (uvarint length and bytes), then the session ID (the rest).
func AppendFetch(dst []byte, f Fetch) []byte {
	dst = binary.AppendUvarint(dst, f.Incarnation)
	dst = appendString(dst, f.Proof)
	return append(dst, f.ID...)
}

// DecodeFetch decodes what AppendFetch encodes. Errors wrap ErrMalformed.
func DecodeFetch(b []byte) (Fetch, error) {
	inc, k := binary.Uvarint(b)
	if k <= 0 {
		return Fetch{}, fmt.Errorf("%w: fetch payload of %d bytes", ErrMalformed, len(b))
	}
	b = b[k:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > MaxProof || n > uint64(len(b)-k) {
		return Fetch{}, fmt.Errorf("%w: fetch proof", ErrMalformed)
	}
	proof, id := b[k:k+int(n)], b[k+int(n):]
	if len(id) == 0 || len(id) > MaxIDLen {
		return Fetch{}, fmt.Errorf("%w: fetch of a %d-byte ID", ErrMalformed, len(id))
	}
	return Fetch{Incarnation: inc, Proof: string(proof), ID: string(id)}, nil
}

// AppendFetchReply appends the encoding of r: the status byte, then for
// FetchFound a batch (section 3, uncompressed) of one full record, for
// FetchRedirect the node ID.
func AppendFetchReply(dst []byte, r FetchReply) []byte {
	if r.Status == FetchFound && r.Backup {
		dst = append(dst, byte(fetchFoundBackup))
	} else {
		dst = append(dst, byte(r.Status))
	}
	switch r.Status {
	case FetchFound:
		return AppendBatch(dst, []Record{{Kind: KindFull, Change: r.Copy}})
	case FetchRedirect:
		return append(dst, r.Redirect...)
	}
	return dst
}

// DecodeFetchReply decodes a reply to a fetch of session id. Errors wrap
// ErrMalformed, ErrLimit or ErrVersion.
func DecodeFetchReply(b []byte, id string, lim Limits) (FetchReply, error) {
	if len(b) == 0 {
		return FetchReply{}, fmt.Errorf("%w: empty fetch reply", ErrMalformed)
	}
	r := FetchReply{Status: FetchStatus(b[0])}
	if r.Status == fetchFoundBackup {
		r.Status, r.Backup = FetchFound, true
	}
	rest := b[1:]
	switch r.Status {
	case FetchNone, FetchPending, FetchEnded:
		if len(rest) != 0 {
			return FetchReply{}, fmt.Errorf("%w: %v fetch reply with %d trailing bytes", ErrMalformed, r.Status, len(rest))
		}
	case FetchFound:
		recs, err := DecodeBatch(rest, lim)
		if err != nil {
			return FetchReply{}, err
		}
		// A session regenerated within its grace window comes under its
		// new ID, naming the asked one as PrevID.
		if len(recs) != 1 || recs[0].Kind != KindFull || recs[0].Change.ID != id && recs[0].Change.PrevID != id {
			return FetchReply{}, fmt.Errorf("%w: fetch reply does not hold one full copy of the session asked for", ErrMalformed)
		}
		r.Copy = recs[0].Change
	case FetchRedirect:
		if len(rest) == 0 || len(rest) > MaxIDLen {
			return FetchReply{}, fmt.Errorf("%w: redirect to a %d-byte node ID", ErrMalformed, len(rest))
		}
		r.Redirect = string(rest)
	default:
		return FetchReply{}, fmt.Errorf("%w: fetch reply status %d", ErrMalformed, b[0])
	}
	return r, nil
}

// TransferOp is what a MsgTransfer asks.
type TransferOp byte

// Transfer ops.
const (
	// TransferPromote: the sender is leaving; take over as owner every copy
	// you hold from it.
	TransferPromote TransferOp = 1
	// TransferDrop: the sender has a new buddy that holds every session;
	// drop the copies you hold from it.
	TransferDrop TransferOp = 2
)

// Transfer is the payload of MsgTransfer.
type Transfer struct {
	Op TransferOp
	// Incarnation is the sender's, so that a transfer captured from an
	// earlier run of the sender means nothing to this one.
	Incarnation uint64
}

// AppendTransfer appends the encoding of t: the op byte and the
// incarnation (uvarint).
func AppendTransfer(dst []byte, t Transfer) []byte {
	return binary.AppendUvarint(append(dst, byte(t.Op)), t.Incarnation)
}

// DecodeTransfer decodes what AppendTransfer encodes. Errors wrap
// ErrMalformed.
func DecodeTransfer(b []byte) (Transfer, error) {
	if len(b) < 2 || TransferOp(b[0]) != TransferPromote && TransferOp(b[0]) != TransferDrop {
		return Transfer{}, fmt.Errorf("%w: transfer payload", ErrMalformed)
	}
	inc, k := binary.Uvarint(b[1:])
	if k <= 0 || 1+k != len(b) {
		return Transfer{}, fmt.Errorf("%w: transfer payload", ErrMalformed)
	}
	return Transfer{Op: TransferOp(b[0]), Incarnation: inc}, nil
}

// AppendCount appends a count (uvarint): the reply to a transfer.
func AppendCount(dst []byte, n uint64) []byte { return binary.AppendUvarint(dst, n) }

// DecodeCount decodes what AppendCount encodes.
func DecodeCount(b []byte) (uint64, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) {
		return 0, fmt.Errorf("%w: count", ErrMalformed)
	}
	return n, nil
}

// Leave is the payload of MsgLeave: the sender leaves the cluster.
type Leave struct {
	// Incarnation is the sender's; a leave from an earlier run means
	// nothing to a later one.
	Incarnation uint64
}

// AppendLeave appends the encoding of l: the incarnation (uvarint).
func AppendLeave(dst []byte, l Leave) []byte { return binary.AppendUvarint(dst, l.Incarnation) }

// DecodeLeave decodes what AppendLeave encodes. Errors wrap ErrMalformed.
func DecodeLeave(b []byte) (Leave, error) {
	inc, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) {
		return Leave{}, fmt.Errorf("%w: leave payload", ErrMalformed)
	}
	return Leave{Incarnation: inc}, nil
}

// Probe is the payload of MsgProbe: the node the receiver should ping for
// the sender.
type Probe struct {
	// Target is the ID of the node to ping.
	Target string
}

// AppendProbe appends the encoding of p: the target's length (one byte)
// and the target.
func AppendProbe(dst []byte, p Probe) []byte {
	dst = append(dst, byte(len(p.Target)))
	return append(dst, p.Target...)
}

// DecodeProbe decodes what AppendProbe encodes. Errors wrap ErrMalformed.
func DecodeProbe(b []byte) (Probe, error) {
	if len(b) < 2 || int(b[0]) != len(b)-1 || len(b)-1 > MaxIDLen {
		return Probe{}, fmt.Errorf("%w: probe payload", ErrMalformed)
	}
	return Probe{Target: string(b[1:])}, nil
}

// ProbeReply is the payload of MsgProbeReply.
type ProbeReply struct {
	// OK: the target answered the receiver's ping.
	OK bool
	// Incarnation is the target's incarnation as its pong said (0 when it
	// did not answer).
	Incarnation uint64
	// Draining: the target's pong said it is draining.
	Draining bool
}

// AppendProbeReply appends the encoding of r: a state byte (0 silent, 1
// answered, 2 answered draining) and the incarnation (uvarint).
func AppendProbeReply(dst []byte, r ProbeReply) []byte {
	state := byte(0)
	switch {
	case r.OK && r.Draining:
		state = 2
	case r.OK:
		state = 1
	}
	dst = append(dst, state)
	return binary.AppendUvarint(dst, r.Incarnation)
}

// DecodeProbeReply decodes what AppendProbeReply encodes. Errors wrap
// ErrMalformed.
func DecodeProbeReply(b []byte) (ProbeReply, error) {
	if len(b) < 2 || b[0] > 2 {
		return ProbeReply{}, fmt.Errorf("%w: probe reply payload", ErrMalformed)
	}
	inc, k := binary.Uvarint(b[1:])
	if k <= 0 || 1+k != len(b) {
		return ProbeReply{}, fmt.Errorf("%w: probe reply payload", ErrMalformed)
	}
	return ProbeReply{OK: b[0] > 0, Draining: b[0] == 2, Incarnation: inc}, nil
}

// Rumour is the payload of MsgRumour: the sender found Target, in its run
// Incarnation, dead (neither it nor the nodes it asked to probe it got an
// answer), or, Alive, answering again after it was dead.
type Rumour struct {
	// Target is the ID of the node found dead or alive.
	Target string
	// Incarnation is the run of Target that was found so.
	Incarnation uint64
	// Alive: Target answers again.
	Alive bool
}

// AppendRumour appends the encoding of r: the target's length (one byte),
// the target, the incarnation (uvarint) and the news (one byte: 0 dead, 1
// alive).
func AppendRumour(dst []byte, r Rumour) []byte {
	dst = append(dst, byte(len(r.Target)))
	dst = append(dst, r.Target...)
	dst = binary.AppendUvarint(dst, r.Incarnation)
	if r.Alive {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// DecodeRumour decodes what AppendRumour encodes. Errors wrap ErrMalformed.
func DecodeRumour(b []byte) (Rumour, error) {
	if len(b) < 3 || b[0] == 0 || int(b[0]) > MaxIDLen || len(b) < 1+int(b[0])+1 {
		return Rumour{}, fmt.Errorf("%w: rumour payload", ErrMalformed)
	}
	n := int(b[0])
	inc, k := binary.Uvarint(b[1+n:])
	if k <= 0 || 1+n+k+1 != len(b) || b[len(b)-1] > 1 {
		return Rumour{}, fmt.Errorf("%w: rumour payload", ErrMalformed)
	}
	return Rumour{Target: string(b[1 : 1+n]), Incarnation: inc, Alive: b[len(b)-1] == 1}, nil
}
