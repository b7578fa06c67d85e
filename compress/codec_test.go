package compress

import (
	"bytes"
	"errors"
	"testing"
)

// testCodecs returns one Codec of every kind, the dictionary codec using
// the test dictionary under ID 3.
func testCodecs(t *testing.T) []Codec {
	t.Helper()
	var cs []Codec
	for _, name := range []string{NameNone, NameS2, NameZstdFastest, NameZstd, NameZstdBetter} {
		c, err := CodecByName(name)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	dc, err := NewZstdDict(3, d, LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	return append(cs, dc)
}

// testInputs returns payloads of every kind and size, plus edge cases.
func testInputs() [][]byte {
	ins := [][]byte{nil, {}, {0}, []byte("a"), bytes.Repeat([]byte{0}, 100000), bytes.Repeat([]byte("abc"), 50000)}
	for _, k := range allKinds {
		ins = append(ins, genPayload(k, 42))
	}
	for _, s := range benchSizes {
		ins = append(ins, sizedPayload(s, 7), sizedBatch(s, 4, 8))
	}
	return ins
}

func TestCodecRoundTrip(t *testing.T) {
	for _, c := range testCodecs(t) {
		t.Run(c.Name(), func(t *testing.T) {
			for _, in := range testInputs() {
				enc := c.Encode([]byte("prefix"), in)
				if !bytes.HasPrefix(enc, []byte("prefix")) {
					t.Fatal("Encode did not append")
				}
				payload := enc[len("prefix"):]
				out, err := c.Decode([]byte("x"), payload, len(in))
				if err != nil {
					t.Fatalf("len %d: %v", len(in), err)
				}
				if !bytes.Equal(out[1:], in) || out[0] != 'x' {
					t.Fatalf("len %d: round trip mismatch", len(in))
				}
				if len(in) > 0 {
					out, err = c.Decode(out[:1], payload, len(in)-1)
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("len %d, limit len-1: got %v, want ErrTooLarge", len(in), err)
					}
					if len(out) != 1 {
						t.Fatalf("on error Decode returned length %d, want 1", len(out))
					}
				}
			}
		})
	}
}

func TestCodecNamesAndIDs(t *testing.T) {
	want := map[string]byte{
		NameNone: IDNone, NameS2: IDS2, NameZstdFastest: IDZstdFastest,
		NameZstd: IDZstd, NameZstdBetter: IDZstdBetter, NameZstdDict: IDZstdDict,
	}
	for _, c := range testCodecs(t) {
		if id, ok := want[c.Name()]; !ok || id != c.ID() {
			t.Errorf("codec %q has ID %d, want %d", c.Name(), c.ID(), id)
		}
		if codecName(c.ID()) != c.Name() {
			t.Errorf("codecName(%d) = %q, want %q", c.ID(), codecName(c.ID()), c.Name())
		}
	}
	for _, l := range []Level{LevelFastest, LevelDefault, LevelBetter} {
		if levelByName(l.String()) != l {
			t.Errorf("levelByName(%q) != %v", l.String(), l)
		}
	}
	if _, err := CodecByName("gzip"); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("CodecByName(gzip) = %v, want ErrUnknownCodec", err)
	}
	if _, err := NewZstd(0); err == nil {
		t.Error("NewZstd(0) succeeded")
	}
	if _, err := NewZstdDict(1, []byte("not a dictionary"), LevelFastest); err == nil {
		t.Error("NewZstdDict with garbage succeeded")
	}
}

// The bare zstd payloads are standard zstd frames naming the dictionary
// by the ID the caller chose, whatever the dictionary bytes said.
func TestZstdDictEmbedsID(t *testing.T) {
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewZstdDict(300, d, LevelDefault)
	if err != nil {
		t.Fatal(err)
	}
	payload := c.Encode(nil, genPayload(kindDelta, 1))
	if _, err := zstdContentSize(payload, 300, 1<<20); err != nil {
		t.Fatalf("payload does not name dictionary 300: %v", err)
	}
}

func TestCodecSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	in := sizedBatch(1024, 16, 5)
	for _, c := range testCodecs(t) {
		dst := c.Encode(nil, in)
		payload := bytes.Clone(dst)
		out := make([]byte, 0, len(in))
		if n := testing.AllocsPerRun(20, func() { dst = c.Encode(dst[:0], in) }); n != 0 {
			t.Errorf("%s: Encode allocates %.1f times per call", c.Name(), n)
		}
		if n := testing.AllocsPerRun(20, func() {
			var err error
			if out, err = c.Decode(out[:0], payload, len(in)); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: Decode allocates %.1f times per call", c.Name(), n)
		}
	}
}
