package compress

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary frames to Decode. The seed corpus in
// testdata/fuzz/FuzzDecode holds valid frames of every codec and
// malformed ones. Decode must not panic, must fail only with the package's
// sentinel errors, must never return more than the limit, and whatever it
// returns must survive an encode/decode round trip.
func FuzzDecode(f *testing.F) {
	c := fuzzCompressor(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		out, err := c.Decode([]byte("p"), frame, fuzzLimit)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if len(out) != 1 {
				t.Fatalf("on error dst has length %d", len(out))
			}
			return
		}
		payload := out[1:]
		if len(payload) > fuzzLimit {
			t.Fatalf("decoded %d bytes, limit %d", len(payload), fuzzLimit)
		}
		if len(payload) > 0 {
			if _, err := c.Decode(nil, frame, len(payload)-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("limit one below the payload size: %v, want ErrTooLarge", err)
			}
		}
		again, err := c.Decode(nil, c.Encode(nil, payload), len(payload))
		if err != nil || !bytes.Equal(again, payload) {
			t.Fatalf("re-encoded payload does not round-trip: %v", err)
		}
	})
}

// FuzzRoundTrip encodes arbitrary payloads with every configuration and
// checks that any Compressor sharing the dictionaries decodes them.
func FuzzRoundTrip(f *testing.F) {
	reg := dictRegistry(f, fuzzDictID)
	var cs []*Compressor
	for _, name := range configNames {
		cs = append(cs, mustNew(f, Config{Codec: name, MinSize: 1}))
		cs = append(cs, mustNew(f, Config{Codec: name, MinSize: 1, Dictionaries: reg}))
	}
	dec := mustNew(f, Config{Codec: NameNone, Dictionaries: reg})
	for i, k := range allKinds {
		f.Add(genPayload(k, uint64(i)), uint8(i))
	}
	f.Add([]byte{}, uint8(0))
	f.Add(make([]byte, 1000), uint8(3))
	f.Fuzz(func(t *testing.T, payload []byte, sel uint8) {
		c := cs[int(sel)%len(cs)]
		frame := c.Encode(nil, payload)
		if len(frame) > storedLen(len(payload)) {
			t.Fatalf("frame of %d bytes is longer than the stored frame", len(frame))
		}
		out, err := dec.Decode(nil, frame, len(payload))
		if err != nil || !bytes.Equal(out, payload) {
			t.Fatalf("round trip: %v", err)
		}
		if len(payload) > 0 {
			if _, err := dec.Decode(nil, frame, len(payload)-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("limit one below the payload size: %v, want ErrTooLarge", err)
			}
		}
	})
}
