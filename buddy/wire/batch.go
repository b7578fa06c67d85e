package wire

// Batches and batch replies (PROTOCOL.md sections 3 and 4). Everything here
// is hand-written on encoding/binary varints: no reflection, no schema, one
// pass each way.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/tandemsession/tandem/core"
)

// WireVersion is the version byte that starts every batch and batch reply
// this package writes. A decoder rejects any other version with ErrVersion.
// Version 2 added the ownership epoch to every record and the fenced list
// to batch replies.
const WireVersion = 2

// MaxIDLen is the longest session ID, node ID or previous session ID, in
// bytes, that a batch, a reply or an envelope may carry.
const MaxIDLen = 64

// MaxVersion bounds every version and epoch a record carries: a session
// sees one version per commit and one epoch per move, so no honest record
// comes near it, and a record beyond it (a member's forgery) is refused
// before it can hold a copy above every later change, or wrap a counter.
const MaxVersion = 1 << 48

// Default limits; see DefaultLimits.
const (
	defaultMaxRecords = 4096
	defaultMaxKey     = 1024
	defaultMaxValue   = 1 << 20
	defaultMaxAttrs   = 4096
)

// DefaultLimits returns the limits a node applies unless configured
// otherwise: at most 4096 records per batch (and IDs per reply), attribute
// keys of at most 1024 bytes, values of at most 1 MiB, and at most 4096
// attributes set (and, separately, 4096 keys deleted) per record.
func DefaultLimits() Limits {
	return Limits{
		MaxRecords: defaultMaxRecords,
		MaxKey:     defaultMaxKey,
		MaxValue:   defaultMaxValue,
		MaxAttrs:   defaultMaxAttrs,
	}
}

// orDefault replaces every zero or negative field of lim by its default.
func (lim Limits) orDefault() Limits {
	if lim.MaxRecords <= 0 {
		lim.MaxRecords = defaultMaxRecords
	}
	if lim.MaxKey <= 0 {
		lim.MaxKey = defaultMaxKey
	}
	if lim.MaxValue <= 0 {
		lim.MaxValue = defaultMaxValue
	}
	if lim.MaxAttrs <= 0 {
		lim.MaxAttrs = defaultMaxAttrs
	}
	return lim
}

// String returns the kind's name ("delta", "full", "remove", "touch"), or
// "kind(N)" for an unknown kind.
func (k Kind) String() string {
	switch k {
	case KindDelta:
		return "delta"
	case KindFull:
		return "full"
	case KindRemove:
		return "remove"
	case KindTouch:
		return "touch"
	case KindMove:
		return "move"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// The flags byte of a delta or full record: flagClear is bit 0;
// flagPrevUntil (bit 1) means a varint of Change.PrevUntil (unix
// nanoseconds) follows the access time, and is set only with a PrevID.
// Every other bit is reserved and must be zero.
const (
	flagClear     = 1 << 0
	flagPrevUntil = 1 << 1
	flagsKnown    = flagClear | flagPrevUntil
)

// Smallest encodings, used to reject counts the remaining bytes cannot hold
// before anything is allocated for them.
const (
	minRecord = 5 // touch: kind, ID length, one ID byte, epoch, accessed
	minPair   = 2 // empty key and empty value
	minKey    = 1 // empty key
	minID     = 2 // ID length and one byte
	minFence  = 4 // an ID, an empty holder, an epoch
)

// BatchReply is the backup's answer to a batch.
type BatchReply struct {
	// NeedFull lists the session IDs whose delta did not apply because the
	// backup's copy was missing or not at the delta's base version: the
	// owner must send a full copy of each.
	NeedFull []string
	// Fenced lists the sessions whose records were refused because
	// another node owns them under a newer epoch: the sender lost them.
	Fenced []Fence
	// Refused lists the sessions whose new copies the backup did not take
	// because it holds the most copies it may: they have one copy.
	Refused []string
}

// Fence names a session that another node owns under a newer epoch.
type Fence struct {
	// ID is the session ID.
	ID string
	// Holder is the node that owns the session now, as far as the backup
	// knows ("" when it does not).
	Holder string
	// Epoch is the newest epoch the backup knows for the session.
	Epoch uint64
}

// AppendBatch appends the encoding of recs to dst and returns the extended
// slice. It grows dst at most once.
//
// Only the fields that a record's kind carries are written (see Record); a
// Delta or Full record's kind, not Change.Full, decides which it is. A nil
// Change encodes as an empty one. AppendBatch does not check limits, and a
// record it cannot describe (unknown kind, empty ID, an ID longer than
// MaxIDLen) is written as is and rejected by DecodeBatch on the far side.
func AppendBatch(dst []byte, recs []Record) []byte {
	dst = slices.Grow(dst, batchSize(recs))
	dst = append(dst, WireVersion)
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	var empty core.Change
	for _, r := range recs {
		c := r.Change
		if c == nil {
			c = &empty
		}
		dst = append(dst, byte(r.Kind))
		switch r.Kind {
		case KindDelta, KindFull:
			dst = appendString(dst, c.ID)
			dst = appendString(dst, c.PrevID)
			dst = binary.AppendUvarint(dst, c.Base)
			dst = binary.AppendUvarint(dst, c.Version)
			dst = binary.AppendUvarint(dst, c.Epoch)
			var flags byte
			if c.Clear {
				flags |= flagClear
			}
			until := c.PrevID != "" && !c.PrevUntil.IsZero()
			if until {
				flags |= flagPrevUntil
			}
			dst = append(dst, flags)
			dst = binary.AppendVarint(dst, unixNano(c.Created))
			dst = binary.AppendVarint(dst, unixNano(c.Accessed))
			if until {
				dst = binary.AppendVarint(dst, unixNano(c.PrevUntil))
			}
			dst = binary.AppendUvarint(dst, uint64(len(c.Set)))
			for _, a := range c.Set {
				dst = appendString(dst, a.Key)
				dst = binary.AppendUvarint(dst, uint64(len(a.Value)))
				dst = append(dst, a.Value...)
			}
			dst = binary.AppendUvarint(dst, uint64(len(c.Deleted)))
			for _, k := range c.Deleted {
				dst = appendString(dst, k)
			}
		case KindRemove:
			dst = appendString(dst, c.ID)
			dst = binary.AppendUvarint(dst, c.Base)
			dst = binary.AppendUvarint(dst, c.Version)
			dst = binary.AppendUvarint(dst, c.Epoch)
		case KindTouch:
			dst = appendString(dst, c.ID)
			dst = binary.AppendUvarint(dst, c.Epoch)
			dst = binary.AppendVarint(dst, unixNano(c.Accessed))
		case KindMove:
			dst = appendString(dst, c.ID)
			dst = binary.AppendUvarint(dst, c.Epoch)
			dst = appendString(dst, r.To)
		}
	}
	return dst
}

// batchSize returns an upper bound of the encoded size of recs.
func batchSize(recs []Record) int {
	const v = binary.MaxVarintLen64
	n := 1 + v
	for _, r := range recs {
		c := r.Change
		if c == nil {
			n += 1 + 5*v + 1 + 2*v + 2*v
			continue
		}
		n += 1 + 3*v + len(c.ID) + len(c.PrevID) + len(r.To) + 5*v + 1 + 3*v
		for _, a := range c.Set {
			n += 2*v + len(a.Key) + len(a.Value)
		}
		for _, k := range c.Deleted {
			n += v + len(k)
		}
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// unixNano encodes t; the zero time is 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano decodes what unixNano encodes: 0 is the zero time.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// DecodeBatch decodes a batch written by AppendBatch, enforcing lim (a zero
// or negative field of lim means its DefaultLimits value) and MaxIDLen.
//
// Errors wrap ErrVersion (the first byte is not WireVersion), ErrLimit (a
// count or length is above its bound though the bytes are there) or
// ErrMalformed (anything else: truncation, a count or length the remaining
// bytes cannot hold, an unknown kind, reserved flag bits, an empty session
// ID, trailing bytes). DecodeBatch allocates in proportion to len(b) only,
// whatever the counts claim.
//
// The result shares no memory with b, which the caller may reuse. Delta
// and Full records carry a *core.Change with Full set by kind; Remove
// records one with ID, Base, Version, Epoch and Removed; Touch records one
// with ID, Epoch and Accessed; Move records one with ID and Epoch, and the
// new owner in Record.To. Empty Set and Deleted decode as nil; an empty value as a
// non-nil empty slice. Times decode in the local zone and compare equal
// (time.Time.Equal) to what was encoded; 0 stands for the zero time.
func DecodeBatch(b []byte, lim Limits) ([]Record, error) {
	lim = lim.orDefault()
	r := reader{b: b, rec: -1, what: "batch", item: "record"}
	if err := r.version(); err != nil {
		return nil, err
	}
	n, err := r.count("record count", minRecord, lim.MaxRecords, "MaxRecords")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, r.end()
	}
	recs := make([]Record, n)
	changes := make([]core.Change, n)
	for i := range recs {
		r.rec = i
		c := &changes[i]
		kind, err := r.byte("kind")
		if err != nil {
			return nil, err
		}
		k := Kind(kind)
		recs[i] = Record{Kind: k, Change: c}
		switch k {
		case KindDelta, KindFull:
			err = r.decodeChange(c, lim)
			c.Full = k == KindFull
			if err == nil && k == KindDelta && c.Version != c.Base+1 {
				err = r.fail(ErrMalformed, "delta from version %d to %d: a delta moves one version", c.Base, c.Version)
			}
		case KindRemove:
			if c.ID, err = r.id("session ID"); err != nil {
				break
			}
			if c.Base, err = r.uvarint("base version"); err != nil {
				break
			}
			if c.Version, err = r.uvarint("version"); err != nil {
				break
			}
			if c.Epoch, err = r.uvarint("epoch"); err != nil {
				break
			}
			err = r.bounded(c)
			c.Removed = true
		case KindTouch:
			if c.ID, err = r.id("session ID"); err != nil {
				break
			}
			if c.Epoch, err = r.uvarint("epoch"); err != nil {
				break
			}
			if err = r.bounded(c); err != nil {
				break
			}
			var t int64
			t, err = r.varint("accessed")
			c.Accessed = fromUnixNano(t)
		case KindMove:
			if c.ID, err = r.id("session ID"); err != nil {
				break
			}
			if c.Epoch, err = r.uvarint("epoch"); err != nil {
				break
			}
			if err = r.bounded(c); err != nil {
				break
			}
			recs[i].To, err = r.id("new owner")
		default:
			err = r.fail(ErrMalformed, "unknown kind %d", kind)
		}
		if err != nil {
			return nil, err
		}
	}
	r.rec = -1
	if err := r.end(); err != nil {
		return nil, err
	}
	return recs, nil
}

// decodeChange reads the body of a delta or full record into c.
func (r *reader) decodeChange(c *core.Change, lim Limits) error {
	var err error
	if c.ID, err = r.id("session ID"); err != nil {
		return err
	}
	prev, err := r.bytes("previous ID", MaxIDLen, "MaxIDLen")
	if err != nil {
		return err
	}
	if len(prev) > 0 {
		c.PrevID = string(prev)
	}
	if c.Base, err = r.uvarint("base version"); err != nil {
		return err
	}
	if c.Version, err = r.uvarint("version"); err != nil {
		return err
	}
	if c.Epoch, err = r.uvarint("epoch"); err != nil {
		return err
	}
	if err := r.bounded(c); err != nil {
		return err
	}
	flags, err := r.byte("flags")
	if err != nil {
		return err
	}
	if flags&^flagsKnown != 0 {
		return r.fail(ErrMalformed, "reserved flag bits %#02x set", flags&^flagsKnown)
	}
	if flags&flagPrevUntil != 0 && c.PrevID == "" {
		return r.fail(ErrMalformed, "a grace window's end without a previous ID")
	}
	c.Clear = flags&flagClear != 0
	created, err := r.varint("created")
	if err != nil {
		return err
	}
	accessed, err := r.varint("accessed")
	if err != nil {
		return err
	}
	c.Created, c.Accessed = fromUnixNano(created), fromUnixNano(accessed)
	if flags&flagPrevUntil != 0 {
		until, err := r.varint("grace window end")
		if err != nil {
			return err
		}
		c.PrevUntil = fromUnixNano(until)
	}

	n, err := r.count("set count", minPair, lim.MaxAttrs, "MaxAttrs")
	if err != nil {
		return err
	}
	if n > 0 {
		c.Set = make([]core.Attr, n)
		for j := range c.Set {
			key, err := r.bytes("key", lim.MaxKey, "MaxKey")
			if err != nil {
				return err
			}
			val, err := r.bytes("value", lim.MaxValue, "MaxValue")
			if err != nil {
				return err
			}
			c.Set[j] = core.Attr{Key: string(key), Value: append([]byte{}, val...)}
		}
	}
	if n, err = r.count("deleted count", minKey, lim.MaxAttrs, "MaxAttrs"); err != nil {
		return err
	}
	if n > 0 {
		c.Deleted = make([]string, n)
		for j := range c.Deleted {
			key, err := r.bytes("deleted key", lim.MaxKey, "MaxKey")
			if err != nil {
				return err
			}
			c.Deleted[j] = string(key)
		}
	}
	return nil
}

// AppendReply appends the encoding of rep to dst and returns the extended
// slice.
func AppendReply(dst []byte, rep BatchReply) []byte {
	n := 1 + 2*binary.MaxVarintLen64
	for _, id := range rep.NeedFull {
		n += binary.MaxVarintLen64 + len(id)
	}
	for _, f := range rep.Fenced {
		n += 3*binary.MaxVarintLen64 + len(f.ID) + len(f.Holder)
	}
	for _, id := range rep.Refused {
		n += binary.MaxVarintLen64 + len(id)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, WireVersion)
	dst = binary.AppendUvarint(dst, uint64(len(rep.NeedFull)))
	for _, id := range rep.NeedFull {
		dst = appendString(dst, id)
	}
	dst = binary.AppendUvarint(dst, uint64(len(rep.Fenced)))
	for _, f := range rep.Fenced {
		dst = appendString(dst, f.ID)
		dst = appendString(dst, f.Holder)
		dst = binary.AppendUvarint(dst, f.Epoch)
	}
	dst = binary.AppendUvarint(dst, uint64(len(rep.Refused)))
	for _, id := range rep.Refused {
		dst = appendString(dst, id)
	}
	return dst
}

// DecodeReply decodes a batch reply written by AppendReply. Each of its
// lists holds at most lim.MaxRecords entries (a zero or negative value
// means the default); IDs are 1 to MaxIDLen bytes long, holders at most
// MaxIDLen. Errors wrap ErrVersion, ErrLimit or ErrMalformed as for
// DecodeBatch. The result shares no memory with b; empty lists decode as
// nil.
func DecodeReply(b []byte, lim Limits) (BatchReply, error) {
	lim = lim.orDefault()
	r := reader{b: b, rec: -1, what: "batch reply", item: "ID"}
	if err := r.version(); err != nil {
		return BatchReply{}, err
	}
	n, err := r.count("ID count", minID, lim.MaxRecords, "MaxRecords")
	if err != nil {
		return BatchReply{}, err
	}
	var rep BatchReply
	if n > 0 {
		rep.NeedFull = make([]string, n)
		for i := range rep.NeedFull {
			r.rec = i
			if rep.NeedFull[i], err = r.id("ID"); err != nil {
				return BatchReply{}, err
			}
		}
		r.rec = -1
	}
	r.item = "fence"
	if n, err = r.count("fence count", minFence, lim.MaxRecords, "MaxRecords"); err != nil {
		return BatchReply{}, err
	}
	if n > 0 {
		rep.Fenced = make([]Fence, n)
		for i := range rep.Fenced {
			r.rec = i
			f := &rep.Fenced[i]
			if f.ID, err = r.id("fenced ID"); err != nil {
				return BatchReply{}, err
			}
			holder, err := r.bytes("holder", MaxIDLen, "MaxIDLen")
			if err != nil {
				return BatchReply{}, err
			}
			f.Holder = string(holder)
			if f.Epoch, err = r.uvarint("epoch"); err != nil {
				return BatchReply{}, err
			}
		}
		r.rec = -1
	}
	r.item = "refused ID"
	if n, err = r.count("refused count", minID, lim.MaxRecords, "MaxRecords"); err != nil {
		return BatchReply{}, err
	}
	if n > 0 {
		rep.Refused = make([]string, n)
		for i := range rep.Refused {
			r.rec = i
			if rep.Refused[i], err = r.id("refused ID"); err != nil {
				return BatchReply{}, err
			}
		}
		r.rec = -1
	}
	if err := r.end(); err != nil {
		return BatchReply{}, err
	}
	return rep, nil
}

// bounded checks a record's versions and epoch against MaxVersion.
func (r *reader) bounded(c *core.Change) error {
	if c.Base >= MaxVersion || c.Version >= MaxVersion || c.Epoch >= MaxVersion {
		return r.fail(ErrLimit, "version %d (base %d, epoch %d) beyond MaxVersion", c.Version, c.Base, c.Epoch)
	}
	return nil
}

// reader walks an encoded batch or reply. Its methods return errors that
// wrap ErrMalformed, ErrLimit or ErrVersion and name what was being read,
// the record (or reply entry) and the offset.
type reader struct {
	b    []byte
	off  int
	rec  int    // index of the item being read, -1 outside items
	what string // "batch" or "batch reply"
	item string // "record" or "ID"
}

// fail returns an error wrapping sentinel, with context.
func (r *reader) fail(sentinel error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if r.rec >= 0 {
		return fmt.Errorf("%w: %s %s %d at offset %d: %s", sentinel, r.what, r.item, r.rec, r.off, msg)
	}
	return fmt.Errorf("%w: %s at offset %d: %s", sentinel, r.what, r.off, msg)
}

func (r *reader) rest() int { return len(r.b) - r.off }

func (r *reader) version() error {
	if len(r.b) == 0 {
		return r.fail(ErrMalformed, "empty")
	}
	if v := r.b[0]; v != WireVersion {
		return r.fail(ErrVersion, "version %d, this node speaks %d", v, WireVersion)
	}
	r.off = 1
	return nil
}

func (r *reader) end() error {
	if n := r.rest(); n != 0 {
		return r.fail(ErrMalformed, "%d trailing bytes", n)
	}
	return nil
}

func (r *reader) byte(what string) (byte, error) {
	if r.rest() < 1 {
		return 0, r.fail(ErrMalformed, "%s truncated", what)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		if n == 0 {
			return 0, r.fail(ErrMalformed, "%s truncated", what)
		}
		return 0, r.fail(ErrMalformed, "%s overflows 64 bits", what)
	}
	r.off += n
	return v, nil
}

func (r *reader) varint(what string) (int64, error) {
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		if n == 0 {
			return 0, r.fail(ErrMalformed, "%s truncated", what)
		}
		return 0, r.fail(ErrMalformed, "%s overflows 64 bits", what)
	}
	r.off += n
	return v, nil
}

// count reads a count of items each at least minSize bytes long. A count
// the remaining bytes cannot hold is malformed; one above max (named
// limit) breaks a limit.
func (r *reader) count(what string, minSize, max int, limit string) (int, error) {
	v, err := r.uvarint(what)
	if err != nil {
		return 0, err
	}
	if v > uint64(r.rest()/minSize) {
		return 0, r.fail(ErrMalformed, "%s %d exceeds what %d remaining bytes hold", what, v, r.rest())
	}
	if v > uint64(max) {
		return 0, r.fail(ErrLimit, "%s %d exceeds %s %d", what, v, limit, max)
	}
	return int(v), nil
}

// bytes reads a length-prefixed byte string of at most max bytes (named
// limit). The result aliases r.b: callers copy it.
func (r *reader) bytes(what string, max int, limit string) ([]byte, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return nil, r.fail(ErrMalformed, "%s length truncated or overflowing", what)
	}
	r.off += n
	if v > uint64(r.rest()) {
		return nil, r.fail(ErrMalformed, "%s of %d bytes truncated, %d remain", what, v, r.rest())
	}
	if v > uint64(max) {
		return nil, r.fail(ErrLimit, "%s of %d bytes exceeds %s %d", what, v, limit, max)
	}
	s := r.b[r.off : r.off+int(v) : r.off+int(v)]
	r.off += int(v)
	return s, nil
}

// id reads a non-empty ID of at most MaxIDLen bytes and copies it.
func (r *reader) id(what string) (string, error) {
	s, err := r.bytes(what, MaxIDLen, "MaxIDLen")
	if err != nil {
		return "", err
	}
	if len(s) == 0 {
		return "", r.fail(ErrMalformed, "empty %s", what)
	}
	return string(s), nil
}
