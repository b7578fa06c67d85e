package compress

import (
	"fmt"
	"runtime"
	"testing"
)

// Run with, for example:
//
//	go test -run='^$' -bench=. -benchtime=200ms ./compress/
//
// Every benchmark reports MB/s of uncompressed payload, allocs/op and the
// compression ratio (payload bytes / frame bytes, frame header included).

// benchCodecs are the codec configurations compared by the benchmarks;
// "zstd-dict" is zstd-fastest with the trained test dictionary active.
var benchCodecs = []string{NameNone, NameS2, NameZstdFastest, NameZstd, NameZstdBetter, "zstd-dict"}

var benchSizes = []int{64, 256, 1 << 10, 4 << 10, 64 << 10}

// benchBatch is the number of payloads per replication batch.
const benchBatch = 64

// benchCompressor returns a Compressor for one of benchCodecs. MinSize is
// 1 so that the codec itself is measured at every size.
func benchCompressor(tb testing.TB, name string) *Compressor {
	tb.Helper()
	cfg := Config{Codec: name, MinSize: 1}
	if name == "zstd-dict" {
		d, err := testDictionary()
		if err != nil {
			tb.Fatal(err)
		}
		reg := NewRegistry()
		if err := reg.Add(1, d); err != nil {
			tb.Fatal(err)
		}
		if err := reg.SetActive(1); err != nil {
			tb.Fatal(err)
		}
		cfg = Config{Codec: NameZstdFastest, MinSize: 1, Dictionaries: reg}
	}
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// benchCodec runs encode and decode sub-benchmarks over inputs, one input
// per iteration in turn; MB/s and ratio are averages over the inputs.
func benchCodec(b *testing.B, c *Compressor, inputs [][]byte, decode bool) {
	frames := make([][]byte, len(inputs))
	var in, out, maxLen int
	for i, p := range inputs {
		frames[i] = c.Encode(nil, p)
		in += len(p)
		out += len(frames[i])
		maxLen = max(maxLen, len(p))
	}
	ratio := float64(in) / float64(out)
	avg := int64(in / len(inputs))
	b.Run("encode", func(b *testing.B) {
		dst := make([]byte, 0, 2*maxLen+64)
		// Warm up every pooled encoder so allocs/op shows steady state.
		for range 2 * runtime.GOMAXPROCS(0) {
			dst = c.Encode(dst[:0], inputs[0])
		}
		b.SetBytes(avg)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			dst = c.Encode(dst[:0], inputs[i%len(inputs)])
			i++
		}
		b.ReportMetric(ratio, "ratio")
	})
	if !decode {
		return
	}
	b.Run("decode", func(b *testing.B) {
		dst := make([]byte, 0, maxLen)
		for range 2 * runtime.GOMAXPROCS(0) {
			dst, _ = c.Decode(dst[:0], frames[0], maxLen)
		}
		b.SetBytes(avg)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var err error
			if dst, err = c.Decode(dst[:0], frames[i%len(frames)], maxLen); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(ratio, "ratio")
	})
}

// benchSingles is how many distinct payloads single-payload benchmarks
// cycle through.
const benchSingles = 64

type benchShape struct {
	name   string
	inputs [][]byte
}

// BenchmarkSizes measures every codec on mixed session payloads of each
// size, alone and as a batch of 64.
func BenchmarkSizes(b *testing.B) {
	for _, size := range benchSizes {
		singles := make([][]byte, benchSingles)
		for i := range singles {
			singles[i] = sizedPayload(size, uint64(i))
		}
		batched := [][]byte{sizedBatch(size, benchBatch, 1000)}
		for _, shape := range []benchShape{{"single", singles}, {fmt.Sprintf("batch%d", benchBatch), batched}} {
			for _, name := range benchCodecs {
				c := benchCompressor(b, name)
				b.Run(fmt.Sprintf("size=%d/%s/%s", size, shape.name, name), func(b *testing.B) {
					benchCodec(b, c, shape.inputs, true)
				})
			}
		}
	}
}

// BenchmarkKinds measures encoding of each payload kind at its natural
// size, alone and as a batch of 64.
func BenchmarkKinds(b *testing.B) {
	for _, kind := range allKinds {
		singles := make([][]byte, benchSingles)
		for i := range singles {
			singles[i] = genPayload(kind, uint64(i))
		}
		batched := [][]byte{kindBatch(kind, benchBatch, 1000)}
		for _, shape := range []benchShape{{"single", singles}, {fmt.Sprintf("batch%d", benchBatch), batched}} {
			for _, name := range benchCodecs {
				c := benchCompressor(b, name)
				b.Run(fmt.Sprintf("kind=%s/%s/%s", kind, shape.name, name), func(b *testing.B) {
					benchCodec(b, c, shape.inputs, kind == kindDelta)
				})
			}
		}
	}
}
