package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// isSentinel reports whether err wraps one of the package's sentinels.
func isSentinel(err error) bool {
	return errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCorrupt) ||
		errors.Is(err, ErrUnknownCodec) || errors.Is(err, ErrUnknownDictionary)
}

// allocatedBytes returns the bytes allocated by one call of f, averaged
// over several calls after warming up every pooled decoder.
func allocatedBytes(f func()) uint64 {
	for range 4 * runtime.GOMAXPROCS(0) {
		f()
	}
	const runs = 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// zstdFrame builds a single-segment zstd frame header declaring fcs bytes
// (with a 4-byte size field), followed by the given raw block bytes.
func zstdFrame(fcs uint32, blocks ...[]byte) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20 | 2<<6}
	f = binary.LittleEndian.AppendUint32(f, fcs)
	for _, b := range blocks {
		f = append(f, b...)
	}
	return f
}

// zstdBlock returns a zstd block header and content.
func zstdBlock(last bool, typ, size int, content []byte) []byte {
	bh := uint32(size)<<3 | uint32(typ)<<1
	if last {
		bh |= 1
	}
	return append([]byte{byte(bh), byte(bh >> 8), byte(bh >> 16)}, content...)
}

func frameOf(codec byte, payload []byte) []byte {
	return append(appendHeader(nil, codec, 0), payload...)
}

func TestHostileFrames(t *testing.T) {
	c := mustNew(t, Config{Dictionaries: dictRegistry(t, 1)})
	zc, err := NewZstd(LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("tandem session "), 8000) // 120 KB
	realZstd := zc.Encode(nil, text)
	// The same frame, declaring only 1000 bytes of content.
	liar := zstdFrame(1000, realZstd[9:])
	if h := realZstd[4]; h != 0x20|2<<6 {
		t.Fatalf("unexpected zstd frame header byte %#x", h)
	}
	vanilla, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	small := genPayload(kindCart, 1)
	s2Frame := frameOf(IDS2, s2.Encode(nil, text))

	const limit = 64 << 10
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrCorrupt},
		{"overlong header", bytes.Repeat([]byte{0x80}, 11), ErrCorrupt},
		{"unknown codec", []byte{6, 1, 2, 3}, ErrUnknownCodec},
		{"codec 15", []byte{15}, ErrUnknownCodec},
		{"stored frame with dictionary", appendHeader(nil, IDNone, 3), ErrCorrupt},
		{"dictionary codec without ID", frameOf(IDZstdDict, realZstd), ErrCorrupt},
		{"unknown dictionary", append(appendHeader(nil, IDZstdDict, 9), realZstd...), ErrUnknownDictionary},
		{"stored over limit", frameOf(IDNone, None().Encode(nil, make([]byte, limit+1))), ErrTooLarge},
		{"stored length lies", frameOf(IDNone, append(binary.AppendUvarint(nil, 10), "short"...)), ErrCorrupt},
		{"stored trailing bytes", frameOf(IDNone, append(binary.AppendUvarint(nil, 1), "long"...)), ErrCorrupt},
		{"s2 bomb", frameOf(IDS2, append(binary.AppendUvarint(nil, 1<<31), 0, 0)), ErrTooLarge},
		{"s2 expands past limit", s2Frame, ErrTooLarge},
		{"s2 length lies", frameOf(IDS2, append(binary.AppendUvarint(nil, 100), s2.Encode(nil, small)[2:]...)), ErrCorrupt},
		{"s2 bad varint", frameOf(IDS2, bytes.Repeat([]byte{0xff}, 6)), ErrCorrupt},
		{"zstd declares 1 GiB", frameOf(IDZstd, zstdFrame(1<<30, zstdBlock(true, zstdBlockRLE, 1<<17, []byte{0}))), ErrTooLarge},
		{"zstd RLE block past declared size", frameOf(IDZstd, zstdFrame(16, zstdBlock(true, zstdBlockRLE, 1<<17, []byte{0}))), ErrCorrupt},
		{"zstd RLE blocks past declared size", frameOf(IDZstd, zstdFrame(1000,
			zstdBlock(false, zstdBlockRLE, 600, []byte{0}), zstdBlock(true, zstdBlockRLE, 600, []byte{0}))), ErrCorrupt},
		{"zstd raw block past declared size", frameOf(IDZstd, zstdFrame(4, zstdBlock(true, zstdBlockRaw, 8, []byte("12345678")))), ErrCorrupt},
		{"zstd compressed block past declared size", frameOf(IDZstd, liar), ErrCorrupt},
		{"zstd oversized block", frameOf(IDZstd, zstdFrame(1000, zstdBlock(true, zstdBlockCompressed, 1<<20-1, nil))), ErrCorrupt},
		{"zstd reserved block", frameOf(IDZstd, zstdFrame(1000, zstdBlock(true, 3, 1, []byte{0}))), ErrCorrupt},
		{"zstd no last block", frameOf(IDZstd, zstdFrame(1000, zstdBlock(false, zstdBlockRaw, 1, []byte{0}))), ErrCorrupt},
		{"zstd two frames", frameOf(IDZstd, append(zc.Encode(nil, small), zc.Encode(nil, small)...)), ErrCorrupt},
		{"zstd trailing byte", frameOf(IDZstd, append(zc.Encode(nil, small), 0)), ErrCorrupt},
		{"zstd skippable frame", frameOf(IDZstd, []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4}), ErrCorrupt},
		{"zstd without content size", frameOf(IDZstd, vanilla.EncodeAll(small[:200], nil)), ErrCorrupt},
		{"zstd bad magic", frameOf(IDZstd, []byte("not zstd at all")), ErrCorrupt},
		{"zstd frame relabeled s2", frameOf(IDS2, zc.Encode(nil, small)), ErrCorrupt},
		{"s2 frame relabeled zstd", frameOf(IDZstdFastest, s2.Encode(nil, small)), ErrCorrupt},
		{"stored frame relabeled zstd", frameOf(IDZstd, None().Encode(nil, small)), ErrCorrupt},
		{"zstd frame names dictionary", frameOf(IDZstd, dictFrameBody(t, small)), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, 3, 8)
			out, err := c.Decode(dst, tc.frame, limit)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if len(out) != 3 {
				t.Errorf("on error dst has length %d, want 3", len(out))
			}
			if raceEnabled {
				return // allocation sizes are not meaningful under -race
			}
			n := allocatedBytes(func() { _, _ = c.Decode(dst, tc.frame, limit) })
			if n > 4<<10 {
				t.Errorf("rejecting the frame allocated %d bytes", n)
			}
			t.Logf("%v; %d bytes allocated", err, n)
		})
	}
}

// dictFrameBody returns the zstd payload of a dictionary frame.
func dictFrameBody(t *testing.T, in []byte) []byte {
	c := mustNew(t, Config{MinSize: 1, Dictionaries: dictRegistry(t, 1)})
	f := c.Encode(nil, in)
	if f[0] != appendHeader(nil, IDZstdDict, 1)[0] {
		t.Fatal("not a dictionary frame")
	}
	return f[1:]
}

// Every proper prefix of a valid frame is an error, and so is a frame
// with bytes appended.
func TestTruncatedFrames(t *testing.T) {
	ins := [][]byte{genPayload(kindDelta, 1), genPayload(kindTokens, 2), sizedPayload(4096, 3), kindBatch(kindCart, 16, 4)}
	for name, c := range allCompressors(t) {
		for _, in := range ins {
			frame := c.Encode(nil, in)
			for i := range len(frame) {
				out, err := c.Decode(nil, frame[:i], len(in))
				if err == nil {
					t.Fatalf("%s: prefix %d/%d of a frame decoded (%d bytes)", name, i, len(frame), len(out))
				}
				if !isSentinel(err) {
					t.Fatalf("%s: prefix %d: error %v wraps no sentinel", name, i, err)
				}
			}
			if _, err := c.Decode(nil, append(frame, 0), len(in)+1); err == nil {
				t.Errorf("%s: frame with a trailing byte decoded", name)
			}
		}
	}
}

// Random and mutated frames never panic, never exceed the limit, and
// fail with a sentinel.
func TestRandomFrames(t *testing.T) {
	c := mustNew(t, Config{Dictionaries: dictRegistry(t, 1)})
	r := rand.New(rand.NewPCG(1, 2))
	var valid [][]byte
	for _, cc := range allCompressors(t) {
		valid = append(valid, cc.Encode(nil, sizedPayload(2048, 5)))
	}
	const limit = 4096
	check := func(frame []byte) {
		out, err := c.Decode(nil, frame, limit)
		if err != nil && !isSentinel(err) {
			t.Fatalf("frame %x: error %v wraps no sentinel", frame, err)
		}
		if len(out) > limit {
			t.Fatalf("frame %x: decoded %d bytes, limit %d", frame, len(out), limit)
		}
	}
	for range 20000 {
		n := r.IntN(64)
		frame := make([]byte, n)
		for i := range frame {
			frame[i] = byte(r.Uint32())
		}
		if n > 0 {
			frame[0] = byte(r.IntN(16))
		}
		check(frame)
	}
	for range 20000 {
		frame := bytes.Clone(valid[r.IntN(len(valid))])
		for range 1 + r.IntN(4) {
			frame[r.IntN(len(frame))] = byte(r.Uint32())
		}
		check(frame)
	}
}
