// Package compress compresses the session deltas that Tandem replicates to
// a buddy node, one self-describing frame per payload or batch.
//
// A Compressor encodes with one configured codec and decodes frames of
// every codec, so sender and receiver need no agreement beyond the
// dictionaries they load:
//
//	c, err := compress.New(compress.Config{}) // zstd-fastest
//	frame := c.Encode(buf[:0], batch)
//	payload, err := c.Decode(out[:0], frame, maxBatchSize)
//
// Decode takes a hard limit on the decoded size and checks it before
// allocating; truncated, malformed and hostile frames return errors that
// wrap ErrCorrupt, ErrTooLarge, ErrUnknownCodec or ErrUnknownDictionary,
// never panics. Encode and Decode allocate nothing once the caller's
// buffers have grown to size. Nothing in the package starts goroutines,
// so there is nothing to close.
//
// # Frame format
//
// A frame is a uvarint header, dictID<<4 | codecID, followed by the
// codec's payload (see Compressor). Payloads shorter than Config.MinSize,
// and payloads that did not shrink, are stored uncompressed at a cost of
// two to four bytes.
//
// # Choosing a codec
//
// Selected rows of BenchmarkKinds and BenchmarkSizes in this package
// (go test -run='^$' -bench=. -benchtime=200ms -count=3 ./compress/,
// medians of three) on a shared 2-core VM, Go 1.26, klauspost/compress v1.20.4,
// 2026-11-25. Ratio is payload bytes per frame byte; speeds are MB/s of
// payload on one core.
//
//	                  64 JSON deltas     one delta          4 KiB session      4 MiB batch
//	                  (16 KiB)           (255 B)            (single)           (64 x 64 KiB)
//	codec             ratio  enc   dec   ratio  enc   dec   ratio  enc   dec   ratio  enc   dec
//	none               1.00    -     -    0.99    -     -    1.00    -     -    1.00    -     -
//	s2                 3.51 1480  6590    0.99a 1190 15210   1.77 1214  6044    3.13  735  1986
//	zstd-fastest (d)   5.08  506  1717    1.00a  444  2111   2.37  208   836    4.44  270  1373
//	zstd               5.06  437  1704    1.01   161  1331   2.42  133   793    4.53  208  1478
//	zstd-better        5.23  306  1906    1.19    54   138   2.44   70   816    4.89  102  1710
//	zstd-fastest+dict  5.67  409  1167    2.26    59   534   3.51  120   391       -b
//
//	(d) the default.
//	a   does not shrink, so stored; the encode figure is the cost of trying.
//	b   dictionaries are not used above 128 KiB, where they gain nothing.
//	The dictionary is 16 KiB, trained with TrainDictionary on other sessions.
//
// In short:
//
//   - Batches (the normal replication path): zstd-fastest, the default.
//     It meets the 4x-at-300-MB/s goal on JSON delta batches with room to
//     spare; zstd and zstd-better add 0-10% ratio for 1.2-3x the CPU.
//   - CPU-bound senders or very fast links: s2, at 3-4x the speed of
//     zstd-fastest for about 30% less ratio.
//   - Single small deltas (unbatched, latency-sensitive): add a trained
//     dictionary. Without one, JSON deltas of ~250 bytes do not shrink
//     (zstd-better: 1.2x); with one they shrink 2.2x. Dictionary encoding
//     costs ~4 µs per small payload, mostly fixed per call.
//   - Slow or metered links between regions: zstd-better, plus a
//     dictionary if batches are small.
//
// # Dictionaries
//
// TrainDictionary builds a zstd dictionary from sample payloads. A
// Registry holds dictionaries by ID on both sides and names the active
// one; frames carry the ID, so a new dictionary can be rolled out (Add
// everywhere, then SetActive) while frames made with the old one still
// decode.
package compress
