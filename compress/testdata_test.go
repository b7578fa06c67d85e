package compress

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Regenerate testdata with: go test -run TestTestdata -update ./compress/
var update = flag.Bool("update", false, "rewrite testdata/ (dictionary and fuzz seed corpus)")

const (
	dictFile   = "testdata/sessions.zdict"
	corpusDir  = "testdata/fuzz/FuzzDecode"
	fuzzLimit  = 64 << 10
	fuzzDictID = 1
)

// testDictionary returns the dictionary used by tests, benchmarks and the
// fuzz target: a 16 KiB dictionary trained with default options on
// trainingSamples(500) and kept in testdata so that the seed corpus's
// dictionary frames stay valid.
func testDictionary() ([]byte, error) {
	d, err := os.ReadFile(dictFile)
	if err != nil {
		return nil, fmt.Errorf("%w (regenerate with -update)", err)
	}
	return d, nil
}

// fuzzCompressor returns the Compressor the fuzz targets decode with.
func fuzzCompressor(tb testing.TB) *Compressor {
	tb.Helper()
	return mustNew(tb, Config{Dictionaries: dictRegistry(tb, fuzzDictID)})
}

// seedFrames returns the seed corpus: valid frames of every codec, named
// "ok-*", and malformed ones, named "bad-*".
func seedFrames(tb testing.TB) map[string][]byte {
	tb.Helper()
	delta := genPayload(kindDelta, 1)
	cart := genPayload(kindCart, 2)
	batchDeltas := kindBatch(kindDelta, 8, 3)
	seeds := map[string][]byte{}
	add := func(name string, f []byte) { seeds[name] = f }

	add("ok-stored-empty", mustNew(tb, Config{}).Encode(nil, nil))
	add("ok-stored-small", mustNew(tb, Config{}).Encode(nil, []byte(`{"flash":"hi"}`)))
	add("ok-stored-tokens", mustNew(tb, Config{}).Encode(nil, genPayload(kindTokens, 4)))
	for _, name := range []string{NameS2, NameZstdFastest, NameZstd, NameZstdBetter} {
		c := mustNew(tb, Config{Codec: name, MinSize: 1})
		add("ok-"+name+"-cart", c.Encode(nil, cart))
		add("ok-"+name+"-batch", c.Encode(nil, batchDeltas))
	}
	dc := mustNew(tb, Config{MinSize: 1, Dictionaries: dictRegistry(tb, fuzzDictID)})
	add("ok-dict-delta", dc.Encode(nil, delta))
	add("ok-dict-batch", dc.Encode(nil, batchDeltas))
	add("ok-s2-rle", mustNew(tb, Config{Codec: NameS2}).Encode(nil, make([]byte, 4000)))
	add("ok-zstd-rle", mustNew(tb, Config{}).Encode(nil, make([]byte, 4000)))

	zc := seeds["ok-zstd-fastest-cart"]
	add("bad-empty", nil)
	add("bad-truncated-zstd", zc[:len(zc)/2])
	add("bad-truncated-s2", seeds["ok-s2-cart"][:20])
	add("bad-truncated-dict", seeds["ok-dict-delta"][:len(seeds["ok-dict-delta"])-1])
	add("bad-unknown-codec", append([]byte{9}, zc[1:]...))
	add("bad-unknown-dict", append(appendHeader(nil, IDZstdDict, 99), seeds["ok-dict-delta"][1:]...))
	add("bad-codec-swapped", append([]byte{IDS2}, zc[1:]...))
	add("bad-two-frames", append(bytes.Clone(zc), zc[1:]...))
	add("bad-s2-bomb", frameOf(IDS2, append([]byte{0x80, 0x80, 0x80, 0x80, 0x08}, 0, 0)))
	add("bad-zstd-bomb", frameOf(IDZstd, zstdFrame(1<<30, zstdBlock(true, zstdBlockRLE, 1<<17, []byte{0}))))
	add("bad-zstd-rle-liar", frameOf(IDZstd, zstdFrame(16, zstdBlock(true, zstdBlockRLE, 1<<17, []byte{0}))))
	text := bytes.Repeat([]byte("tandem session "), 8000)
	z, err := NewZstd(LevelFastest)
	if err != nil {
		tb.Fatal(err)
	}
	add("bad-zstd-compressed-liar", frameOf(IDZstd, zstdFrame(1000, z.Encode(nil, text)[9:])))
	add("bad-s2-over-limit", frameOf(IDS2, s2.Encode(nil, text)))
	vanilla, err := zstd.NewWriter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	add("bad-zstd-no-content-size", frameOf(IDZstd, vanilla.EncodeAll(cart[:200], nil)))
	add("bad-overlong-header", bytes.Repeat([]byte{0xff}, 12))
	add("bad-random", []byte("\x03\x28\xb5\x2f\xfd\x20\x10\x81\x00\x00\x7f\xff\x01\x02"))
	return seeds
}

func corpusEntry(frame []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(frame)) + ")\n")
}

func parseCorpusEntry(b []byte) ([]byte, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a single-value corpus entry")
	}
	v, ok1 := strings.CutPrefix(lines[1], "[]byte(")
	v, ok2 := strings.CutSuffix(v, ")")
	if !ok1 || !ok2 {
		return nil, errors.New("not a []byte value")
	}
	s, err := strconv.Unquote(v)
	return []byte(s), err
}

// TestTestdata checks that the seed corpus in testdata decodes as its file
// names say, and rewrites testdata with -update.
func TestTestdata(t *testing.T) {
	if *update {
		d, err := TrainDictionary(trainingSamples(500), TrainOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dictFile, d, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, f := range seedFrames(t) {
			if err := os.WriteFile(filepath.Join(corpusDir, name), corpusEntry(f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := fuzzCompressor(t)
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		raw, err := os.ReadFile(filepath.Join(corpusDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		frame, err := parseCorpusEntry(raw)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		_, err = c.Decode(nil, frame, fuzzLimit)
		switch {
		case strings.HasPrefix(e.Name(), "ok-") && err != nil:
			t.Errorf("%s: %v", e.Name(), err)
		case strings.HasPrefix(e.Name(), "bad-") && err == nil:
			t.Errorf("%s: decoded", e.Name())
		case err != nil && !isSentinel(err):
			t.Errorf("%s: error %v wraps no sentinel", e.Name(), err)
		}
	}
	for name := range seedFrames(t) {
		if !slices.Contains(names, name) {
			t.Errorf("seed %s missing from %s (regenerate with -update)", name, corpusDir)
		}
	}
}
