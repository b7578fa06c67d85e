package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
)

var configNames = []string{"", NameNone, NameS2, NameZstdFastest, NameZstd, NameZstdBetter}

func mustNew(t testing.TB, cfg Config) *Compressor {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dictRegistry returns a registry with the test dictionary under id,
// active.
func dictRegistry(t testing.TB, id uint32) *Registry {
	t.Helper()
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry()
	if err := r.Add(id, d); err != nil {
		t.Fatal(err)
	}
	if err := r.SetActive(id); err != nil {
		t.Fatal(err)
	}
	return r
}

// allCompressors returns a Compressor for every codec name, plus
// dictionary Compressors at each zstd level.
func allCompressors(t testing.TB) map[string]*Compressor {
	t.Helper()
	cs := map[string]*Compressor{}
	for _, name := range configNames {
		cs["codec="+name] = mustNew(t, Config{Codec: name})
	}
	reg := dictRegistry(t, 1)
	for _, name := range []string{NameS2, NameZstdFastest, NameZstd, NameZstdBetter} {
		cs["dict/codec="+name] = mustNew(t, Config{Codec: name, Dictionaries: reg, MinSize: 1})
	}
	return cs
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Codec: "lz4"}); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("New(lz4) = %v, want ErrUnknownCodec", err)
	}
	if _, err := New(Config{MinSize: -1}); err == nil {
		t.Error("New with negative MinSize succeeded")
	}
	for _, name := range configNames {
		if _, err := New(Config{Codec: name}); err != nil {
			t.Errorf("New(%q): %v", name, err)
		}
	}
}

func header(t *testing.T, frame []byte) (codec byte, dict uint32) {
	t.Helper()
	if len(frame) == 0 {
		t.Fatal("empty frame")
	}
	h, n := binary.Uvarint(frame)
	if n <= 0 {
		t.Fatal("bad header")
	}
	return byte(h & 15), uint32(h >> 4)
}

func TestZeroConfig(t *testing.T) {
	z := mustNew(t, Config{})
	in := kindBatch(kindDelta, 64, 1)
	frame := z.Encode(nil, in)
	if id, _ := header(t, frame); id != IDZstdFastest {
		t.Errorf("zero Config encodes with codec %d, want zstd-fastest (%d)", id, IDZstdFastest)
	}
	if r := float64(len(in)) / float64(len(frame)); r < 4 {
		t.Errorf("zero Config ratio on a batch of 64 deltas is %.2f, want >= 4", r)
	}
	out, err := z.Decode(nil, frame, len(in))
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("round trip failed: %v", err)
	}
}

func TestEncodeStoresSmallAndIncompressible(t *testing.T) {
	c := mustNew(t, Config{})
	small := bytes.Repeat([]byte("a"), DefaultMinSize-1)
	if f := c.Encode(nil, small); f[0] != IDNone || len(f) != storedLen(len(small)) {
		t.Errorf("payload below MinSize: header %d, len %d", f[0], len(f))
	}
	if f := c.Encode(nil, bytes.Repeat([]byte("a"), DefaultMinSize)); f[0] == IDNone {
		t.Error("compressible payload of MinSize bytes was stored")
	}
	tokens := genPayload(kindTokens, 1)
	tokens = tokens[len(tokens)-200:] // pure base64, does not shrink
	if f := c.Encode(nil, tokens); f[0] != IDNone || len(f) != storedLen(len(tokens)) {
		t.Errorf("incompressible payload: header %d, len %d", f[0], len(f))
	}
	if f := c.Encode(nil, nil); !bytes.Equal(f, []byte{IDNone, 0}) {
		t.Errorf("empty payload encodes to %x", f)
	}
	none := mustNew(t, Config{Codec: NameNone, Dictionaries: dictRegistry(t, 1), MinSize: 1})
	if f := none.Encode(nil, bytes.Repeat([]byte("a"), 1000)); f[0] != IDNone {
		t.Error(`codec "none" compressed`)
	}
	one := mustNew(t, Config{MinSize: 1, Dictionaries: dictRegistry(t, 1)})
	if codec, _ := header(t, one.Encode(nil, []byte(`{"flash":"Item added to your cart."}`))); codec != IDZstdDict {
		t.Errorf("MinSize 1 with dictionary: tiny JSON payload has codec %d, want dictionary", codec)
	}
}

// Every Compressor decodes every other Compressor's frames, whatever
// codec it encodes with, given the dictionaries.
func TestCrossDecode(t *testing.T) {
	cs := allCompressors(t)
	for encName, enc := range cs {
		for _, in := range testInputs() {
			frame := enc.Encode([]byte("hdr"), in)[3:]
			for decName, dec := range cs {
				if enc.dicts != nil && dec.dicts == nil {
					continue
				}
				out, err := dec.Decode([]byte("p"), frame, len(in))
				if err != nil {
					t.Fatalf("%s -> %s, len %d: %v", encName, decName, len(in), err)
				}
				if !bytes.Equal(out[1:], in) || out[0] != 'p' {
					t.Fatalf("%s -> %s, len %d: mismatch", encName, decName, len(in))
				}
			}
		}
	}
}

func TestHeaderCodecs(t *testing.T) {
	in := kindBatch(kindCart, 8, 3)
	for name, want := range map[string]byte{
		NameS2: IDS2, NameZstdFastest: IDZstdFastest, NameZstd: IDZstd, NameZstdBetter: IDZstdBetter,
	} {
		if id, dict := header(t, mustNew(t, Config{Codec: name}).Encode(nil, in)); id != want || dict != 0 {
			t.Errorf("%s: header codec %d dict %d, want %d, 0", name, id, dict, want)
		}
	}
	big := sizedPayload(dictMaxPayload+1, 1)
	if codec, _ := header(t, mustNew(t, Config{Dictionaries: dictRegistry(t, 1)}).Encode(nil, big)); codec != IDZstdFastest {
		t.Errorf("payload over %d bytes with a dictionary active: codec %d, want zstd-fastest", dictMaxPayload, codec)
	}
	for _, id := range []uint32{1, 7, 8, 255, 1 << 20, 1<<32 - 1} {
		c := mustNew(t, Config{Dictionaries: dictRegistry(t, id)})
		f := c.Encode(nil, in)
		codec, dict := header(t, f)
		if codec != IDZstdDict || dict != id {
			t.Errorf("dictionary %d: header codec %d dict %d", id, codec, dict)
		}
		if wantLen := len(appendHeader(nil, IDZstdDict, id)); (id < 8) != (wantLen == 1) {
			t.Errorf("dictionary %d: header is %d bytes", id, wantLen)
		}
		if out, err := c.Decode(nil, f, len(in)); err != nil || !bytes.Equal(out, in) {
			t.Errorf("dictionary %d: round trip: %v", id, err)
		}
	}
}

func TestDecodeLimit(t *testing.T) {
	in := sizedPayload(4096, 9)
	for name, c := range allCompressors(t) {
		frame := c.Encode(nil, in)
		if _, err := c.Decode(nil, frame, len(in)); err != nil {
			t.Errorf("%s: limit = size: %v", name, err)
		}
		for _, limit := range []int{len(in) - 1, 0, -1} {
			out, err := c.Decode(make([]byte, 0, 16), frame, limit)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s: limit %d: %v, want ErrTooLarge", name, limit, err)
			}
			if len(out) != 0 || cap(out) != 16 {
				t.Errorf("%s: limit %d: dst changed to len %d cap %d", name, limit, len(out), cap(out))
			}
		}
	}
	if out, err := mustNew(t, Config{}).Decode(nil, []byte{IDNone, 0}, 0); err != nil || len(out) != 0 {
		t.Errorf("empty payload with limit 0: %v", err)
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	inputs := [][]byte{genPayload(kindDelta, 1), sizedPayload(4096, 2), kindBatch(kindDelta, 64, 3)}
	for name, c := range allCompressors(t) {
		for _, in := range inputs {
			dst := c.Encode(nil, in)
			frame := bytes.Clone(dst)
			out := make([]byte, 0, len(in))
			if n := testing.AllocsPerRun(20, func() { dst = c.Encode(dst[:0], in) }); n != 0 {
				t.Errorf("%s, len %d: Encode allocates %.1f times per call", name, len(in), n)
			}
			if n := testing.AllocsPerRun(20, func() { out, _ = c.Decode(out[:0], frame, len(in)) }); n != 0 {
				t.Errorf("%s, len %d: Decode allocates %.1f times per call", name, len(in), n)
			}
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	reg := dictRegistry(t, 1)
	cs := []*Compressor{
		mustNew(t, Config{}),
		mustNew(t, Config{Codec: NameS2}),
		mustNew(t, Config{Codec: NameZstdBetter, Dictionaries: reg}),
	}
	dec := mustNew(t, Config{Codec: NameNone, Dictionaries: reg})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var frame, out []byte
			for i := range 50 {
				in := sizedPayload(64<<(i%8), uint64(g*1000+i))
				c := cs[(g+i)%len(cs)]
				frame = c.Encode(frame[:0], in)
				var err error
				out, err = dec.Decode(out[:0], frame, len(in))
				if err == nil && !bytes.Equal(out, in) {
					err = fmt.Errorf("goroutine %d, iteration %d: mismatch", g, i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Roll dictionaries while the others work.
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	for id := uint32(2); id < 6; id++ {
		if err := reg.Add(id, d); err != nil {
			t.Error(err)
		}
		if err := reg.SetActive(id); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
