package compress

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"
)

// Codec is one compression algorithm with fixed settings.
//
// Encode and Decode work on bare codec payloads: they do not read or write
// the one-byte frame header that Compressor adds. Implementations are safe
// for concurrent use and allocate nothing in steady state beyond growing dst
// when its spare capacity is too small.
type Codec interface {
	// ID is the codec's identifier in the frame header (see the ID
	// constants). All zstd dictionaries share IDZstdDict.
	ID() byte

	// Name is the codec's name as accepted by Config.Codec, for example
	// "zstd-fastest". Dictionary codecs are named "zstd-dict".
	Name() string

	// Encode appends the compressed form of src to dst and returns the
	// extended slice. It never fails.
	Encode(dst, src []byte) []byte

	// Decode appends the decompressed form of src to dst and returns the
	// extended slice. If the payload would decode to more than limit
	// bytes it returns an error wrapping ErrTooLarge without allocating
	// the output. Malformed input yields an error wrapping ErrCorrupt.
	// On error the returned slice has dst's original length (bytes in
	// its spare capacity may have been overwritten).
	Decode(dst, src []byte, limit int) ([]byte, error)
}

// Codec IDs as written in the low four bits of the frame header.
// They are part of the wire format and never change meaning.
const (
	// IDNone marks a stored (uncompressed) payload.
	IDNone byte = 0
	// IDS2 marks an S2 block (github.com/klauspost/compress/s2).
	IDS2 byte = 1
	// IDZstdFastest marks a zstd frame encoded at the fastest level.
	IDZstdFastest byte = 2
	// IDZstd marks a zstd frame encoded at the default level.
	IDZstd byte = 3
	// IDZstdBetter marks a zstd frame encoded at the "better" level.
	IDZstdBetter byte = 4
	// IDZstdDict marks a zstd frame encoded with a dictionary; the
	// dictionary ID travels in the frame header next to the codec ID.
	IDZstdDict byte = 5
)

// Codec names accepted by Config.Codec and CodecByName.
const (
	NameNone        = "none"
	NameS2          = "s2"
	NameZstdFastest = "zstd-fastest"
	NameZstd        = "zstd"
	NameZstdBetter  = "zstd-better"
	// NameZstdDict is the Name of dictionary codecs. It is not accepted by
	// Config.Codec: dictionaries are enabled with Config.Dictionaries.
	NameZstdDict = "zstd-dict"
)

// maxCodecID is the largest codec ID this package understands.
const maxCodecID = IDZstdDict

// codecName maps a codec ID to its name; used in error messages.
func codecName(id byte) string {
	switch id {
	case IDNone:
		return NameNone
	case IDS2:
		return NameS2
	case IDZstdFastest:
		return NameZstdFastest
	case IDZstd:
		return NameZstd
	case IDZstdBetter:
		return NameZstdBetter
	case IDZstdDict:
		return NameZstdDict
	}
	return fmt.Sprintf("codec#%d", id)
}

// CodecByName returns a new Codec for one of the names "none", "s2",
// "zstd-fastest", "zstd" and "zstd-better". Unknown names return an error
// wrapping ErrUnknownCodec.
func CodecByName(name string) (Codec, error) {
	switch name {
	case NameNone:
		return None(), nil
	case NameS2:
		return S2(), nil
	case NameZstdFastest:
		return NewZstd(LevelFastest)
	case NameZstd:
		return NewZstd(LevelDefault)
	case NameZstdBetter:
		return NewZstd(LevelBetter)
	}
	return nil, fmt.Errorf("%w: %q (want %q, %q, %q, %q or %q)", ErrUnknownCodec, name,
		NameNone, NameS2, NameZstdFastest, NameZstd, NameZstdBetter)
}

// None returns the identity codec. Its payload is the uvarint length of
// the data followed by the data, so that truncation is detected.
func None() Codec { return noneCodec{} }

type noneCodec struct{}

func (noneCodec) ID() byte     { return IDNone }
func (noneCodec) Name() string { return NameNone }

func (noneCodec) Encode(dst, src []byte) []byte {
	dst = slices.Grow(dst, binary.MaxVarintLen64+len(src))
	dst = binary.AppendUvarint(dst, uint64(len(src)))
	return append(dst, src...)
}

func (noneCodec) Decode(dst, src []byte, limit int) ([]byte, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 {
		return dst, fmt.Errorf("%w: stored length header", ErrCorrupt)
	}
	if n > uint64(max(limit, 0)) {
		return dst, fmt.Errorf("%w: stored payload of %d bytes, limit %d", ErrTooLarge, n, limit)
	}
	if n != uint64(len(src)-k) {
		return dst, fmt.Errorf("%w: stored payload of %d bytes, header says %d", ErrCorrupt, len(src)-k, n)
	}
	return append(dst, src[k:]...), nil
}

// S2 returns the S2 block codec (github.com/klauspost/compress/s2), the
// fastest codec here with a moderate ratio. It is stateless and cheap to
// create.
func S2() Codec { return s2Codec{} }

type s2Codec struct{}

func (s2Codec) ID() byte     { return IDS2 }
func (s2Codec) Name() string { return NameS2 }

func (s2Codec) Encode(dst, src []byte) []byte {
	n := s2.MaxEncodedLen(len(src))
	if n < 0 {
		// Larger than S2's 4 GiB block limit: nothing sensible to do but
		// store. Callers going through Compressor never get here because
		// the stored frame is always at least as small.
		return append(dst, src...)
	}
	dst = slices.Grow(dst, n)
	out := s2.Encode(dst[len(dst):len(dst)+n], src)
	return dst[:len(dst)+len(out)]
}

func (s2Codec) Decode(dst, src []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return dst, fmt.Errorf("%w: %w (length header)", ErrCorrupt, err)
	}
	if n > max(limit, 0) {
		return dst, fmt.Errorf("%w: s2 payload declares %d bytes, limit %d", ErrTooLarge, n, limit)
	}
	start := len(dst)
	dst = slices.Grow(dst, n)
	out, err := s2.Decode(dst[start:start+n], src)
	if err != nil {
		return dst[:start], fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	// s2.Decode writes in place when the slice has room, which it has.
	if len(out) != n || (n > 0 && &out[0] != &dst[start : start+1][0]) {
		return dst[:start], fmt.Errorf("%w: s2 decoded %d bytes, header said %d", ErrCorrupt, len(out), n)
	}
	return dst[:start+n], nil
}
