package compress_test

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/tandemsession/tandem/compress"
)

// A replication batch is encoded into one frame; the receiver decodes it
// with a limit on the decoded size, whatever codec the sender used.
func Example() {
	sender, err := compress.New(compress.Config{}) // zstd-fastest, MinSize 64
	if err != nil {
		log.Fatal(err)
	}
	receiver, err := compress.New(compress.Config{Codec: "s2"})
	if err != nil {
		log.Fatal(err)
	}

	var batch []byte
	for i := range 64 {
		batch = fmt.Appendf(batch, `{"sid":"s_%03d","op":"set","key":"cart.items.%d","value":{"sku":"SKU-%05d","qty":%d}}`+"\n", i%8, i%5, 1000+i, 1+i%3)
	}
	frame := sender.Encode(nil, batch)
	fmt.Println("compressed:", len(frame) < len(batch)/4)

	const limit = 1 << 20 // refuse anything that would decode past 1 MiB
	payload, err := receiver.Decode(nil, frame, limit)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("round trip:", bytes.Equal(payload, batch))

	_, err = receiver.Decode(nil, frame, len(batch)-1)
	fmt.Println("too large:", errors.Is(err, compress.ErrTooLarge))

	_, err = receiver.Decode(nil, frame[:len(frame)/2], limit)
	fmt.Println("truncated:", errors.Is(err, compress.ErrCorrupt))
	// Output:
	// compressed: true
	// round trip: true
	// too large: true
	// truncated: true
}

// Dictionaries make single small deltas compress. Train one from sample
// payloads, load it under the same ID on both sides, then activate it on
// the sender. A later dictionary can be added and activated while the old
// one still decodes in-flight frames.
func ExampleRegistry() {
	var samples [][]byte
	for i := range 300 {
		samples = append(samples, fmt.Appendf(nil,
			`{"sid":"s_%06d","seq":%d,"op":"set","key":"prefs","value":{"theme":"%s","locale":"en-US"},"origin":"tandem-a"}`,
			i*7919%1000000, i, []string{"dark", "light", "system"}[i%3]))
	}
	dict, err := compress.TrainDictionary(samples, compress.TrainOptions{Size: 4 << 10})
	if err != nil {
		log.Fatal(err)
	}

	reg := compress.NewRegistry()
	if err := reg.Add(1, dict); err != nil {
		log.Fatal(err)
	}
	if err := reg.SetActive(1); err != nil {
		log.Fatal(err)
	}
	c, err := compress.New(compress.Config{Dictionaries: reg})
	if err != nil {
		log.Fatal(err)
	}

	delta := []byte(`{"sid":"s_424242","seq":77,"op":"set","key":"prefs","value":{"theme":"dark","locale":"en-US"},"origin":"tandem-a"}`)
	frame := c.Encode(nil, delta)
	fmt.Println("at least 2x smaller:", 2*len(frame) <= len(delta))

	// Frames naming a dictionary the receiver lacks fail clearly.
	plain, err := compress.New(compress.Config{})
	if err != nil {
		log.Fatal(err)
	}
	_, err = plain.Decode(nil, frame, 1<<20)
	fmt.Println("unknown dictionary:", errors.Is(err, compress.ErrUnknownDictionary))

	out, err := c.Decode(nil, frame, 1<<20)
	fmt.Println("round trip:", err == nil && bytes.Equal(out, delta))
	// Output:
	// at least 2x smaller: true
	// unknown dictionary: true
	// round trip: true
}

// A Codec works on bare payloads, without the frame header.
func ExampleCodecByName() {
	c, err := compress.CodecByName("zstd")
	if err != nil {
		log.Fatal(err)
	}
	src := []byte(strings.Repeat("session ", 100))
	enc := c.Encode(nil, src)
	dec, err := c.Decode(nil, enc, len(src))
	fmt.Println(c.Name(), c.ID(), len(enc) < len(src), bytes.Equal(dec, src))
	// Output:
	// zstd 3 true true
}
