package compress

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultCodec is the codec used when Config.Codec is empty. On batches
	// of 64 JSON session deltas it gives 5x at ~500 MB/s encode, ~1.7 GB/s
	// decode on one core (see the package documentation).
	DefaultCodec = NameZstdFastest

	// DefaultMinSize is the payload size below which Encode stores payloads
	// uncompressed when Config.MinSize is 0. Without a dictionary, JSON
	// payloads this small do not shrink; with one they usually do, so
	// lower MinSize (down to 1) when using dictionaries on tiny payloads.
	DefaultMinSize = 64
)

// Config selects how a Compressor encodes. The zero value is valid and
// means zstd-fastest, payloads under 64 bytes stored, no dictionaries.
// Decoding does not depend on Config: a Compressor decodes every codec,
// and every dictionary in Dictionaries.
type Config struct {
	// Codec names the codec for new frames: "none", "s2", "zstd-fastest",
	// "zstd" or "zstd-better". Default (""): DefaultCodec, "zstd-fastest".
	// "none" disables compression entirely, dictionaries included.
	Codec string

	// MinSize is the smallest payload, in bytes, that Encode tries to
	// compress; smaller payloads are stored as-is. Payloads that do not
	// shrink are stored whatever their size. Default (0): DefaultMinSize,
	// 64 bytes. Set 1 to try every non-empty payload. Negative is invalid.
	MinSize int

	// Dictionaries, if not nil, is consulted on every Encode and Decode.
	// While it has an active dictionary, Encode uses zstd with that
	// dictionary, at the level of Codec ("s2" uses LevelFastest), for
	// payloads up to 128 KiB; larger payloads gain nothing from it.
	// Frames naming a dictionary decode if that ID is loaded. Default
	// (nil): no dictionaries; dictionary frames fail with
	// ErrUnknownDictionary.
	Dictionaries *Registry
}

// Compressor encodes payloads into self-describing frames and decodes such
// frames. It is safe for concurrent use and should be created once and
// shared: it holds zstd encoders and decoders for GOMAXPROCS concurrent
// calls (further calls wait their turn). It starts no goroutines and needs
// no Close. Create it with New; the zero Compressor only stores.
//
// A frame is a uvarint header, dictID<<4 | codecID, followed by the codec's
// payload. Frames without dictionary, and dictionary frames with IDs 1–7,
// have a one-byte header. Stored frames (codec ID 0) carry the uvarint
// payload length and the payload verbatim; S2 frames carry an S2 block;
// zstd frames carry one standard single-segment zstd frame (without
// checksum), which names the dictionary, if any, by the same ID.
type Compressor struct {
	codec   Codec // encoder for new frames; nil for "none"
	level   Level // level used with dictionaries
	minSize int
	dicts   *Registry
	zdec    *zstd.Decoder // decodes every non-dictionary zstd level
}

// New validates cfg and returns a Compressor. Unknown codec names return an
// error wrapping ErrUnknownCodec.
func New(cfg Config) (*Compressor, error) {
	c := &Compressor{minSize: cfg.MinSize, dicts: cfg.Dictionaries, level: LevelFastest}
	if c.minSize == 0 {
		c.minSize = DefaultMinSize
	}
	if c.minSize < 0 {
		return nil, fmt.Errorf("compress: Config.MinSize %d is negative", cfg.MinSize)
	}
	name := cfg.Codec
	if name == "" {
		name = DefaultCodec
	}
	var err error
	if c.zdec, err = newZstdDecoder(); err != nil {
		return nil, fmt.Errorf("compress: zstd decoder: %w", err)
	}
	switch name {
	case NameNone:
	case NameS2:
		c.codec = S2()
	case NameZstdFastest, NameZstd, NameZstdBetter:
		c.level = levelByName(name)
		enc, err := newZstdEncoder(c.level)
		if err != nil {
			return nil, err
		}
		c.codec = &zstdCodec{id: c.level.codecID(), name: name, enc: enc, dec: c.zdec}
	default:
		_, err := CodecByName(name)
		return nil, fmt.Errorf("compress: Config.Codec: %w", err)
	}
	return c, nil
}

// errNotNew is returned by a Compressor that was not made by New.
var errNotNew = errors.New("compress: Compressor not created with New")

// dictMaxPayload is the largest payload encoded with the active
// dictionary. Beyond one zstd block (128 KiB) the payload's own history
// supplies the matches: measured on 4 MiB batches the dictionary gained
// nothing in ratio and halved decode speed.
const dictMaxPayload = 128 << 10

// maxHeaderLen is the longest frame header: a uvarint of up to 36 bits.
const maxHeaderLen = 6

func appendHeader(dst []byte, codecID byte, dictID uint32) []byte {
	return binary.AppendUvarint(dst, uint64(dictID)<<4|uint64(codecID))
}

// Encode appends a frame holding src to dst and returns the extended
// slice. It never fails: payloads below MinSize, payloads that do not
// shrink, and all payloads under codec "none" are stored uncompressed. If
// dst has enough spare capacity Encode does not allocate; otherwise it
// grows dst once.
func (c *Compressor) Encode(dst, src []byte) []byte {
	start := len(dst)
	if c.codec != nil && len(src) >= c.minSize {
		codec, dictID := c.codec, uint32(0)
		if c.dicts != nil && len(src) <= dictMaxPayload {
			if d := c.dicts.active(); d != nil {
				if dc, err := d.codec(c.level); err == nil {
					codec, dictID = dc, d.id
				}
			}
		}
		stored := storedLen(len(src))
		dst = appendHeader(dst, codec.ID(), dictID)
		dst = codec.Encode(dst, src)
		if len(dst)-start < stored {
			return dst
		}
		dst = dst[:start]
	}
	dst = append(dst, IDNone)
	return noneCodec{}.Encode(dst, src)
}

// storedLen is the length of the stored frame of an n-byte payload.
func storedLen(n int) int {
	var buf [binary.MaxVarintLen64]byte
	return 1 + binary.PutUvarint(buf[:], uint64(n)) + n
}

// Decode appends the payload of frame to dst and returns the extended
// slice. Any frame made by any Compressor decodes, whatever this one's
// Codec, provided a dictionary frame's ID is loaded in Dictionaries.
//
// If the payload would exceed limit bytes, Decode returns an error wrapping
// ErrTooLarge before allocating it. Other failures wrap ErrCorrupt
// (truncated or malformed frame), ErrUnknownCodec or ErrUnknownDictionary.
// On error the returned slice has dst's original length (bytes in its
// spare capacity may have been overwritten). If dst has room for the
// payload Decode does not allocate; otherwise it grows dst once, by at
// most the payload size.
func (c *Compressor) Decode(dst, frame []byte, limit int) ([]byte, error) {
	h, n := binary.Uvarint(frame)
	if n <= 0 || n > maxHeaderLen {
		if len(frame) == 0 {
			return dst, fmt.Errorf("%w: empty frame", ErrCorrupt)
		}
		return dst, fmt.Errorf("%w: bad frame header", ErrCorrupt)
	}
	codecID, dictID, body := byte(h&0xf), h>>4, frame[n:]
	if dictID > 1<<32-1 {
		return dst, fmt.Errorf("%w: dictionary ID %d out of range", ErrCorrupt, dictID)
	}
	if codecID > maxCodecID {
		return dst, fmt.Errorf("%w: codec ID %d", ErrUnknownCodec, codecID)
	}
	if (codecID == IDZstdDict) != (dictID != 0) {
		return dst, fmt.Errorf("%w: %s frame with dictionary ID %d", ErrCorrupt, codecName(codecID), dictID)
	}
	// The codecs' errors already name the codec and wrap a sentinel.
	var err error
	switch codecID {
	case IDNone:
		dst, err = noneCodec{}.Decode(dst, body, limit)
	case IDS2:
		dst, err = s2Codec{}.Decode(dst, body, limit)
	case IDZstdFastest, IDZstd, IDZstdBetter:
		if c.zdec == nil {
			return dst, errNotNew
		}
		dst, err = decodeZstd(c.zdec, 0, dst, body, limit)
	case IDZstdDict:
		var d *dictionary
		if c.dicts != nil {
			d = c.dicts.lookup(uint32(dictID))
		}
		if d == nil {
			return dst, fmt.Errorf("%w: frame needs dictionary %d", ErrUnknownDictionary, dictID)
		}
		dst, err = decodeZstd(d.dec, d.id, dst, body, limit)
	}
	return dst, err
}
