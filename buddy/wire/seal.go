package wire

// The sealed envelope: every replication request and reply travels in one,
// so a message is authenticated and confidential even over h2c. PROTOCOL.md
// gives the byte layout and the threat model.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// MsgType is the type of a sealed message. It is authenticated with the
// message; the receiver checks that it is the type its endpoint expects.
type MsgType byte

// Message types. Requests are odd, their replies the following even value;
// the values are part of the wire format and never change meaning.
const (
	// MsgBatch carries a batch of records (AppendBatch), compressed.
	MsgBatch MsgType = 1
	// MsgBatchReply answers MsgBatch with a BatchReply (AppendReply).
	MsgBatchReply MsgType = 2
	// MsgFetch asks a node for a session it holds (failover).
	MsgFetch MsgType = 3
	// MsgFetchReply answers MsgFetch.
	MsgFetchReply MsgType = 4
	// MsgPing checks that a peer is alive and holds the cluster key.
	MsgPing MsgType = 5
	// MsgPong answers MsgPing.
	MsgPong MsgType = 6
	// MsgTransfer streams sessions to a new buddy (state transfer).
	MsgTransfer MsgType = 7
	// MsgTransferReply answers MsgTransfer.
	MsgTransferReply MsgType = 8
	// MsgLeave announces that a node is leaving (graceful drain).
	MsgLeave MsgType = 9
	// MsgLeaveReply answers MsgLeave.
	MsgLeaveReply MsgType = 10
	// MsgUsers asks a node for a user's sessions, or to end them.
	MsgUsers MsgType = 21
	// MsgUsersReply answers MsgUsers.
	MsgUsersReply MsgType = 22
	// MsgProbe asks a node to ping another for the sender (an indirect
	// probe, before the sender suspects that node).
	MsgProbe MsgType = 11
	// MsgProbeReply answers MsgProbe with whether the target answered.
	MsgProbeReply MsgType = 12
	// MsgRumour tells a node that the sender found another dead.
	MsgRumour MsgType = 13
	// MsgRumourReply answers MsgRumour (an empty payload).
	MsgRumourReply MsgType = 14
)

// String returns the type's name, such as "batch" or "batch-reply", or
// "msg(N)" for an unknown type.
func (t MsgType) String() string {
	switch t {
	case MsgBatch:
		return "batch"
	case MsgBatchReply:
		return "batch-reply"
	case MsgFetch:
		return "fetch"
	case MsgFetchReply:
		return "fetch-reply"
	case MsgPing:
		return "ping"
	case MsgPong:
		return "pong"
	case MsgTransfer:
		return "transfer"
	case MsgTransferReply:
		return "transfer-reply"
	case MsgLeave:
		return "leave"
	case MsgLeaveReply:
		return "leave-reply"
	case MsgUsers:
		return "users"
	case MsgUsersReply:
		return "users-reply"
	case MsgProbe:
		return "probe"
	case MsgProbeReply:
		return "probe-reply"
	case MsgRumour:
		return "rumour"
	case MsgRumourReply:
		return "rumour-reply"
	}
	return fmt.Sprintf("msg(%d)", byte(t))
}

// EnvelopeVersion is the version byte that starts every envelope. Open
// rejects any other version with ErrVersion. Version 2 binds every
// envelope to the recipient's boot (see Seal).
const EnvelopeVersion = 2

// ClusterKeySize is the size of a cluster key: an AES-256 key.
const ClusterKeySize = 32

// Envelope field sizes.
const (
	keyIDSize = 4
	seqSize   = 8
	nonceSize = 12
	tagSize   = 16
	// minEnvelope: version, type, key ID, two one-byte IDs with their
	// lengths, seq, nonce, tag.
	minEnvelope = 1 + 1 + keyIDSize + 2 + 2 + seqSize + nonceSize + tagSize
)

// Header is the authenticated, unencrypted part of an envelope.
type Header struct {
	// Type is the message type.
	Type MsgType
	// From is the sender's node ID.
	From string
	// To is the recipient's node ID.
	To string
	// Seq is the sender's sequence number of the request (for a reply: of
	// the request it answers).
	Seq uint64
	// Boot is the recipient's boot nonce the envelope was sealed for: the
	// one Open was given, or 0.
	Boot uint64
}

// Sealer seals and opens envelopes for one node with the cluster keys. It is
// immutable after NewSealer and safe for concurrent use.
type Sealer struct {
	self string
	keys []sealKey // keys[0] seals; all open
}

type sealKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// KeyID returns the 4-byte ID under which key travels in envelopes: the
// first 4 bytes of its SHA-256. It does not depend on the key's position in
// a key list, so it is stable across rotation.
func KeyID(key []byte) [4]byte {
	sum := sha256.Sum256(key)
	return [4]byte(sum[:keyIDSize])
}

// NewSealer returns a sealer for node self. keys are the cluster keys, each
// ClusterKeySize (32) bytes: the first seals, all of them open. A key is
// rotated in three rolling deploys, each finished on every node before the
// next starts: [old, new] (every node can open new), [new, old] (every node
// seals with new), [new]. A key repeated in the list is used once. self
// must be 1 to MaxIDLen bytes long.
func NewSealer(self string, keys [][]byte) (*Sealer, error) {
	if self == "" || len(self) > MaxIDLen {
		return nil, fmt.Errorf("buddy: node ID of %d bytes, want 1 to %d", len(self), MaxIDLen)
	}
	if len(keys) == 0 {
		return nil, errors.New("buddy: no cluster key")
	}
	s := &Sealer{self: self, keys: make([]sealKey, 0, len(keys))}
	seen := make(map[[sha256.Size]byte]bool, len(keys))
	for i, k := range keys {
		if len(k) != ClusterKeySize {
			return nil, fmt.Errorf("buddy: cluster key %d has %d bytes, want %d", i, len(k), ClusterKeySize)
		}
		sum := sha256.Sum256(k)
		if seen[sum] {
			continue
		}
		seen[sum] = true
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("buddy: cluster key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("buddy: cluster key %d: %w", i, err)
		}
		s.keys = append(s.keys, sealKey{id: [4]byte(sum[:keyIDSize]), aead: aead})
	}
	return s, nil
}

// Self returns the node ID the sealer seals from and opens for.
func (s *Sealer) Self() string { return s.self }

// Overhead returns how many bytes Seal adds to a payload for recipient to.
func (s *Sealer) Overhead(to string) int {
	return 1 + 1 + keyIDSize + 1 + len(s.self) + 1 + min(len(to), 255) + seqSize + nonceSize + tagSize
}

// Seal appends to dst an envelope holding payload, encrypted and
// authenticated under the first cluster key, from this node to node to,
// with message type typ and sequence number seq, bound to boot, and returns
// the extended slice. It grows dst at most once. The nonce comes from
// crypto/rand.
//
// boot is the recipient's boot nonce as the sender knows it (0 when it
// does not): it is authenticated with the envelope but not sent, so an
// envelope opens only under the boot it was sealed for, and a message
// captured before the recipient restarted never opens after it. A request's
// seq comes from the sender's counter (see ReplayWindow); a reply repeats
// the seq of the request it answers and is sealed for boot 0 (it matches
// one outstanding request only). An ID to longer than 255 bytes is cut to
// 255, which no node accepts (IDs have at most MaxIDLen bytes). dst and
// payload must not overlap.
func (s *Sealer) Seal(dst []byte, to string, typ MsgType, seq, boot uint64, payload []byte) []byte {
	to = to[:min(len(to), 255)]
	k := &s.keys[0]
	dst = slices.Grow(dst, s.Overhead(to)+len(payload)+nonceSize)
	start := len(dst)
	dst = append(dst, EnvelopeVersion, byte(typ))
	dst = append(dst, k.id[:]...)
	dst = append(dst, byte(len(s.self)))
	dst = append(dst, s.self...)
	dst = append(dst, byte(len(to)))
	dst = append(dst, to...)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	nonceAt := len(dst)
	dst = dst[:nonceAt+nonceSize]
	// crypto/rand.Read never fails: on a broken system it crashes the
	// program rather than return predictable bytes.
	_, _ = rand.Read(dst[nonceAt:])
	header := dst[start:]
	// The GCM nonce: the one sent, with boot mixed in, built in dst's spare
	// capacity past where the ciphertext goes.
	end := len(dst) + len(payload) + tagSize
	gcmNonce := bootNonce(dst[end:end+nonceSize:end+nonceSize], dst[nonceAt:], boot)
	return k.aead.Seal(dst, gcmNonce, payload, header)
}

// bootNonce writes into dst (nonceSize bytes) the GCM nonce of an
// envelope: the nonce it carries with the recipient's boot nonce XORed
// into its last 8 bytes. The carried nonce is random and authenticated as
// part of the header, so the GCM nonce is as random, and an envelope opens
// only under the boot it was sealed for.
func bootNonce(dst, sent []byte, boot uint64) []byte {
	copy(dst, sent[:nonceSize])
	b := binary.BigEndian.Uint64(dst[nonceSize-8:])
	binary.BigEndian.PutUint64(dst[nonceSize-8:], b^boot)
	return dst
}

// Open checks and decrypts the envelope msg, sealed for this node's boot
// nonce boot (0 for replies and a first ping), appends its payload to dst
// and returns the header and the extended slice. On error dst is returned
// with its original length (bytes in its spare capacity may be
// overwritten).
//
// Errors wrap ErrVersion (the version byte is not EnvelopeVersion),
// ErrMalformed (msg cannot be parsed, or an ID is empty or longer than
// MaxIDLen) or ErrAuth (msg is for another node, names a key this sealer
// does not hold, or fails authentication: forged, altered, or sealed under
// another key, or for another boot of this node). Open never panics,
// whatever msg holds. dst and msg must not overlap.
//
// Open does not check the sender, the type or the sequence number: the
// caller checks that From is a peer, that Type is the one expected, and,
// for a request, that the sender's ReplayWindow accepts Seq (only after
// Open succeeded, so that forgeries cannot move the window).
func (s *Sealer) Open(dst []byte, msg []byte, boot uint64) (h Header, payload []byte, err error) {
	if len(msg) == 0 {
		return Header{}, dst, fmt.Errorf("%w: empty envelope", ErrMalformed)
	}
	if msg[0] != EnvelopeVersion {
		return Header{}, dst, fmt.Errorf("%w: envelope version %d, this node speaks %d", ErrVersion, msg[0], EnvelopeVersion)
	}
	if len(msg) < minEnvelope {
		return Header{}, dst, fmt.Errorf("%w: envelope of %d bytes, need at least %d", ErrMalformed, len(msg), minEnvelope)
	}
	typ := MsgType(msg[1])
	keyID := [keyIDSize]byte(msg[2 : 2+keyIDSize])
	off := 2 + keyIDSize
	from, off, err := envelopeID(msg, off, "sender")
	if err != nil {
		return Header{}, dst, err
	}
	to, off, err := envelopeID(msg, off, "recipient")
	if err != nil {
		return Header{}, dst, err
	}
	if len(msg)-off < seqSize+nonceSize+tagSize {
		return Header{}, dst, fmt.Errorf("%w: envelope of %d bytes truncated", ErrMalformed, len(msg))
	}
	if string(to) != s.self {
		return Header{}, dst, fmt.Errorf("%w: envelope for node %q, this is %q", ErrAuth, to, s.self)
	}
	seq := binary.BigEndian.Uint64(msg[off:])
	off += seqSize
	nonce := msg[off : off+nonceSize]
	off += nonceSize
	header, sealed := msg[:off], msg[off:]
	n0 := len(dst)
	dst = slices.Grow(dst, len(sealed)-tagSize+nonceSize)
	end := n0 + len(sealed) - tagSize
	gcmNonce := bootNonce(dst[end:end+nonceSize:end+nonceSize], nonce, boot)
	found := false
	for i := range s.keys {
		k := &s.keys[i]
		if k.id != keyID {
			continue
		}
		found = true
		out, err := k.aead.Open(dst, gcmNonce, sealed, header)
		if err == nil {
			return Header{Type: typ, From: string(from), To: s.self, Seq: seq, Boot: boot}, out, nil
		}
	}
	if !found {
		return Header{}, dst, fmt.Errorf("%w: unknown cluster key %x from %q", ErrAuth, keyID, from)
	}
	return Header{}, dst, fmt.Errorf("%w: envelope from %q failed authentication", ErrAuth, from)
}

// envelopeID reads a length-prefixed node ID at msg[off:].
func envelopeID(msg []byte, off int, what string) ([]byte, int, error) {
	if off >= len(msg) {
		return nil, off, fmt.Errorf("%w: envelope truncated in %s", ErrMalformed, what)
	}
	n := int(msg[off])
	off++
	if n == 0 || n > MaxIDLen {
		return nil, off, fmt.Errorf("%w: %s ID of %d bytes, want 1 to %d", ErrMalformed, what, n, MaxIDLen)
	}
	if n > len(msg)-off {
		return nil, off, fmt.Errorf("%w: envelope truncated in %s", ErrMalformed, what)
	}
	return msg[off : off+n], off + n, nil
}

// ReplayWindowSize is how many sequence numbers a ReplayWindow remembers:
// the largest it accepted.
const ReplayWindowSize = 1024

// ReplayWindow rejects replayed sequence numbers of one sender. It holds
// the ReplayWindowSize largest numbers it accepted. A number it holds is a
// replay; so is one at or below the smallest it holds once it holds
// ReplayWindowSize of them (it can no longer tell). Any other number is
// accepted and held. So a message may arrive after as many as
// ReplayWindowSize-1 messages sealed after it, whatever the numbers' gaps.
//
// Senders number their messages from their clock in unix nanoseconds (one
// more than the last, at least the time), and receivers refuse numbers far
// from their own clock: a restarted sender's numbers are above those of its
// previous run, and a forged number, however large, takes one place of the
// window and refuses nothing else.
//
// The zero value is an empty window, ready to use; a ReplayWindow is safe
// for concurrent use and must not be copied after first use.
type ReplayWindow struct {
	mu sync.Mutex
	// held is buf[lo:hi], ascending; buf has room for twice the window so
	// that dropping the smallest is moving lo, and the numbers move down
	// only once every ReplayWindowSize numbers.
	buf    []uint64
	lo, hi int
}

// Accept reports whether seq is new: not seen before and not too old. An
// accepted seq is remembered.
func (w *ReplayWindow) Accept(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil {
		w.buf = make([]uint64, 2*ReplayWindowSize)
	}
	held := w.buf[w.lo:w.hi]
	i := len(held)
	if i > 0 && seq <= held[i-1] {
		var found bool
		if i, found = slices.BinarySearch(held, seq); found {
			return false
		}
	}
	if len(held) == ReplayWindowSize {
		if i == 0 {
			return false // below every number held: too old to tell
		}
		w.lo++ // the smallest leaves
		i--
	}
	if w.hi == len(w.buf) {
		w.hi = copy(w.buf, w.buf[w.lo:w.hi])
		w.lo = 0
	}
	at := w.lo + i
	copy(w.buf[at+1:w.hi+1], w.buf[at:w.hi])
	w.buf[at] = seq
	w.hi++
	return true
}
