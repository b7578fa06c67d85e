package compress

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// Level selects the zstd encoder speed/ratio trade-off.
type Level int

// zstd levels offered by this package. The zero Level is not valid for
// NewZstd; TrainOptions treats it as LevelFastest.
const (
	// LevelFastest is zstd level 1: the fastest zstd encoder.
	LevelFastest Level = iota + 1
	// LevelDefault is zstd level 3.
	LevelDefault
	// LevelBetter is roughly zstd level 7: better ratio, slower.
	LevelBetter
)

// String returns the Config.Codec name of the level's zstd codec.
func (l Level) String() string {
	switch l {
	case LevelFastest:
		return NameZstdFastest
	case LevelDefault:
		return NameZstd
	case LevelBetter:
		return NameZstdBetter
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// levelByName maps a zstd codec name to its level, or 0.
func levelByName(name string) Level {
	switch name {
	case NameZstdFastest:
		return LevelFastest
	case NameZstd:
		return LevelDefault
	case NameZstdBetter:
		return LevelBetter
	}
	return 0
}

func (l Level) valid() bool { return l >= LevelFastest && l <= LevelBetter }

func (l Level) zstdLevel() zstd.EncoderLevel {
	switch l {
	case LevelDefault:
		return zstd.SpeedDefault
	case LevelBetter:
		return zstd.SpeedBetterCompression
	}
	return zstd.SpeedFastest
}

func (l Level) codecID() byte { return IDZstdFastest + byte(l-LevelFastest) }

// zstdEncoderOptions are shared by every zstd encoder in the package.
//
// Encoders are only used through EncodeAll, which runs on the caller's
// goroutine and starts no background goroutines. Concurrency is the number
// of EncodeAll calls that can run at once before callers queue.
// Single-segment frames always carry the content size, which the decoder
// checks against its limit before decoding. The per-frame xxhash
// checksum is left out: frames are small and travel over a reliable
// transport, and 4 bytes matter at these sizes.
func zstdEncoderOptions(l Level) []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(l.zstdLevel()),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false),
		zstd.WithSingleSegment(true),
		// An empty payload still gets a (9-byte) frame, so that every
		// payload round-trips through Codec.Encode and Decode.
		zstd.WithZeroFrames(true),
	}
}

// newZstdEncoder returns a zstd encoder at level l, optionally with a
// dictionary.
func newZstdEncoder(l Level, extra ...zstd.EOption) (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, append(zstdEncoderOptions(l), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("compress: zstd encoder: %w", err)
	}
	return enc, nil
}

// newZstdDecoder returns a decoder used only through DecodeAll. With a nil
// reader no stream goroutines are started, so no Close is needed.
func newZstdDecoder(extra ...zstd.DOption) (*zstd.Decoder, error) {
	opts := append([]zstd.DOption{
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		// Never write past the capacity of the slice handed to DecodeAll;
		// decodeZstd sizes it to the checked content size.
		zstd.WithDecodeAllCapLimit(true),
		// Window size equals content size for the single-segment frames we
		// accept, and content size is checked against the caller's limit.
		zstd.WithDecoderMaxWindow(zstd.MaxWindowSize),
	}, extra...)
	return zstd.NewReader(nil, opts...)
}

// NewZstd returns a zstd codec at the given level. Each codec owns an
// encoder and a decoder sized for GOMAXPROCS concurrent calls; create it
// once and share it. Its payloads are standard zstd frames; its Decode
// accepts only frames shaped like its own output (one single-segment frame
// declaring its content size, nothing after it), as that is what lets it
// bound the output before decoding.
func NewZstd(level Level) (Codec, error) {
	if !level.valid() {
		return nil, fmt.Errorf("compress: invalid zstd level %d", int(level))
	}
	enc, err := newZstdEncoder(level)
	if err != nil {
		return nil, err
	}
	dec, err := newZstdDecoder()
	if err != nil {
		return nil, fmt.Errorf("compress: zstd decoder: %w", err)
	}
	return &zstdCodec{id: level.codecID(), name: level.String(), enc: enc, dec: dec}, nil
}

// zstdCodec implements Codec for plain and dictionary zstd.
type zstdCodec struct {
	id     byte
	name   string
	dictID uint32 // 0 without dictionary
	enc    *zstd.Encoder
	dec    *zstd.Decoder
	// small, if set, encodes payloads shorter than smallDictPayload. Used
	// with dictionaries: for small payloads the dictionary supplies most
	// matches and Huffman-coding the few remaining literals costs more
	// time (~45% of the encode) than it saves bytes (<0.5%).
	small *zstd.Encoder
}

// smallDictPayload is the payload size below which dictionary codecs skip
// literal entropy coding. Measured on session deltas: at 256 bytes the
// ratio drops from 2.18 to 2.17, at 512 bytes from 2.52 to 2.42.
const smallDictPayload = 384

func (c *zstdCodec) ID() byte     { return c.id }
func (c *zstdCodec) Name() string { return c.name }

func (c *zstdCodec) Encode(dst, src []byte) []byte {
	if c.small != nil && len(src) < smallDictPayload {
		return encodeZstd(c.small, dst, src)
	}
	return encodeZstd(c.enc, dst, src)
}

func (c *zstdCodec) Decode(dst, src []byte, limit int) ([]byte, error) {
	return decodeZstd(c.dec, c.dictID, dst, src, limit)
}

// encodeZstd appends a zstd frame of src to dst, growing dst at most once.
func encodeZstd(enc *zstd.Encoder, dst, src []byte) []byte {
	dst = slices.Grow(dst, enc.MaxEncodedSize(len(src)))
	return enc.EncodeAll(src, dst)
}

// zstd block header fields (RFC 8878, section 3.1.1.2).
const (
	zstdBlockRaw        = 0
	zstdBlockRLE        = 1
	zstdBlockCompressed = 2
	zstdMaxBlockSize    = 128 << 10
)

// zstdContentSize validates the framing of a single zstd frame without
// decoding it and returns the content size the frame declares.
//
// Accepted frames are exactly what this package's encoders produce: one
// single-segment frame (so the content size is present and the window is
// no larger than the content), the expected dictionary ID, and nothing
// after the last block. Raw and RLE blocks, the only blocks whose output
// size is visible without decoding, must fit in the declared size, so a
// frame that lies about its size to expand past the limit is rejected
// before anything is allocated. The decoder then writes into a slice whose
// capacity is the declared size and stops with an error instead of growing
// it.
func zstdContentSize(src []byte, wantDict uint32, limit int) (int, error) {
	var h zstd.Header
	rest, err := h.DecodeAndStrip(src)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%w: zstd header: %w", ErrCorrupt, err)
	case h.Skippable:
		return 0, fmt.Errorf("%w: zstd skippable frame", ErrCorrupt)
	case !h.SingleSegment || !h.HasFCS:
		return 0, fmt.Errorf("%w: zstd frame without content size", ErrCorrupt)
	case h.DictionaryID != wantDict && !(h.DictionaryID == 0 && h.FrameContentSize == 0):
		// (Empty frames never name a dictionary.)
		return 0, fmt.Errorf("%w: zstd frame names dictionary %d, frame header %d", ErrCorrupt, h.DictionaryID, wantDict)
	case h.FrameContentSize > uint64(max(limit, 0)):
		return 0, fmt.Errorf("%w: zstd frame declares %d bytes, limit %d", ErrTooLarge, h.FrameContentSize, limit)
	}
	size := h.FrameContentSize
	var visible uint64
	for {
		if len(rest) < 3 {
			return 0, fmt.Errorf("%w: zstd block header truncated", ErrCorrupt)
		}
		bh := uint32(rest[0]) | uint32(rest[1])<<8 | uint32(rest[2])<<16
		rest = rest[3:]
		last := bh&1 != 0
		n := int(bh >> 3)
		if n > zstdMaxBlockSize {
			return 0, fmt.Errorf("%w: zstd block of %d bytes", ErrCorrupt, n)
		}
		stored := n
		switch (bh >> 1) & 3 {
		case zstdBlockRaw:
			visible += uint64(n)
		case zstdBlockRLE:
			visible += uint64(n)
			stored = 1
		case zstdBlockCompressed:
		default:
			return 0, fmt.Errorf("%w: reserved zstd block type", ErrCorrupt)
		}
		if visible > size {
			return 0, fmt.Errorf("%w: zstd blocks exceed declared size %d", ErrCorrupt, size)
		}
		if len(rest) < stored {
			return 0, fmt.Errorf("%w: zstd block truncated", ErrCorrupt)
		}
		rest = rest[stored:]
		if last {
			break
		}
	}
	if h.HasCheckSum {
		if len(rest) < 4 {
			return 0, fmt.Errorf("%w: zstd checksum truncated", ErrCorrupt)
		}
		rest = rest[4:]
	}
	if len(rest) != 0 {
		return 0, fmt.Errorf("%w: %d bytes after zstd frame", ErrCorrupt, len(rest))
	}
	return int(size), nil
}

// decodeZstd appends the content of the zstd frame src to dst.
func decodeZstd(dec *zstd.Decoder, dictID uint32, dst, src []byte, limit int) ([]byte, error) {
	n, err := zstdContentSize(src, dictID, limit)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = slices.Grow(dst, n)
	// A zero-length window onto dst's spare capacity, capped at exactly n:
	// the decoder writes in place and cannot grow it.
	out, err := dec.DecodeAll(src, dst[start:start:start+n])
	if err != nil {
		return dst[:start], fmt.Errorf("%w: zstd: %w", ErrCorrupt, err)
	}
	if len(out) != n {
		return dst[:start], fmt.Errorf("%w: zstd decoded %d bytes, frame declared %d", ErrCorrupt, len(out), n)
	}
	if n > 0 && &out[0] != &dst[start : start+1][0] {
		// Not expected with WithDecodeAllCapLimit, but stay correct.
		copy(dst[start:start+n], out)
	}
	return dst[:start+n], nil
}
