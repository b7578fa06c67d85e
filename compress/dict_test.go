package compress

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestTrainDictionaryRatio(t *testing.T) {
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	if len(d) > DefaultDictSize+1024 {
		t.Errorf("dictionary is %d bytes, want about %d", len(d), DefaultDictSize)
	}
	plain := mustNew(t, Config{MinSize: 1})
	dict := mustNew(t, Config{MinSize: 1, Dictionaries: dictRegistry(t, 1)})
	var in, outPlain, outDict int
	for i := range 200 {
		p := genPayload(kindDelta, uint64(i))
		in += len(p)
		outPlain += len(plain.Encode(nil, p))
		f := dict.Encode(nil, p)
		outDict += len(f)
		if got, err := dict.Decode(nil, f, len(p)); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("delta %d: round trip: %v", i, err)
		}
	}
	t.Logf("single deltas (avg %d B): plain %.2fx, dictionary %.2fx",
		in/200, float64(in)/float64(outPlain), float64(in)/float64(outDict))
	if r := float64(in) / float64(outDict); r < 2 {
		t.Errorf("dictionary ratio on single deltas is %.2f, want >= 2", r)
	}
}

func TestTrainDictionaryRejects(t *testing.T) {
	samples := trainingSamples(20)
	for name, tc := range map[string]struct {
		samples [][]byte
		opts    TrainOptions
	}{
		"no samples":      {nil, TrainOptions{}},
		"one sample":      {samples[:1], TrainOptions{}},
		"tiny samples":    {[][]byte{{1}, {2}, {3}}, TrainOptions{}},
		"empty samples":   {[][]byte{{}, {}, {}}, TrainOptions{}},
		"size too small":  {samples, TrainOptions{Size: 10}},
		"negative size":   {samples, TrainOptions{Size: -1}},
		"bad level":       {samples, TrainOptions{Level: 9}},
		"bad hash length": {samples, TrainOptions{HashBytes: 3}},
	} {
		if _, err := TrainDictionary(tc.samples, tc.opts); err == nil {
			t.Errorf("%s: TrainDictionary succeeded", name)
		}
	}
	// Uniform or tiny but valid input either trains or fails cleanly.
	for _, s := range [][][]byte{
		{bytes.Repeat([]byte{'a'}, 100), bytes.Repeat([]byte{'a'}, 100)},
		{[]byte("12345678"), []byte("abcdefgh")},
	} {
		if d, err := TrainDictionary(s, TrainOptions{}); err == nil {
			if err := NewRegistry().Add(1, d); err != nil {
				t.Errorf("trained dictionary does not load: %v", err)
			}
		}
	}
}

func TestRegistry(t *testing.T) {
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	small, err := TrainDictionary(trainingSamples(50), TrainOptions{Size: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var r Registry // the zero value is usable
	if r.Active() != 0 || len(r.IDs()) != 0 {
		t.Fatal("zero Registry is not empty")
	}
	if err := r.Add(0, d); err == nil {
		t.Error("Add(0) succeeded")
	}
	if err := r.Add(1, []byte("garbage")); err == nil {
		t.Error("Add(garbage) succeeded")
	}
	if err := r.Add(1, d[:40]); err == nil {
		t.Error("Add(truncated dictionary) succeeded")
	}
	if err := r.SetActive(1); !errors.Is(err, ErrUnknownDictionary) {
		t.Errorf("SetActive(unknown) = %v, want ErrUnknownDictionary", err)
	}
	if err := r.Add(1, d); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(1, d); err != nil {
		t.Errorf("re-adding the same dictionary: %v", err)
	}
	if err := r.Add(1, small); err == nil {
		t.Error("Add with different content under a loaded ID succeeded")
	}
	if r.Active() != 0 {
		t.Error("Add activated a dictionary")
	}

	c := mustNew(t, Config{Dictionaries: &r, MinSize: 1})
	in := genPayload(kindDelta, 5)
	if codec, _ := header(t, c.Encode(nil, in)); codec == IDZstdDict {
		t.Error("encoded with a dictionary before any was active")
	}

	// Roll out dictionary 2 while dictionary 1 frames are in flight.
	if err := r.SetActive(1); err != nil {
		t.Fatal(err)
	}
	old := c.Encode(nil, in)
	if codec, id := header(t, old); codec != IDZstdDict || id != 1 {
		t.Fatalf("frame names codec %d dictionary %d, want dictionary 1", codec, id)
	}
	if err := r.Add(2, small); err != nil {
		t.Fatal(err)
	}
	if err := r.SetActive(2); err != nil {
		t.Fatal(err)
	}
	cur := c.Encode(nil, in)
	if _, id := header(t, cur); id != 2 {
		t.Fatalf("after SetActive(2) frames name dictionary %d", id)
	}
	if !slices.Equal(r.IDs(), []uint32{1, 2}) || r.Active() != 2 {
		t.Fatalf("IDs %v active %d", r.IDs(), r.Active())
	}
	for _, f := range [][]byte{old, cur} {
		if out, err := c.Decode(nil, f, len(in)); err != nil || !bytes.Equal(out, in) {
			t.Fatalf("decoding during roll-out: %v", err)
		}
	}
	if err := r.Remove(2); err == nil {
		t.Error("removing the active dictionary succeeded")
	}
	if err := r.Remove(1); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(1); err != nil {
		t.Errorf("removing an unknown ID: %v", err)
	}
	if _, err := c.Decode(nil, old, len(in)); !errors.Is(err, ErrUnknownDictionary) {
		t.Errorf("decoding with a removed dictionary: %v, want ErrUnknownDictionary", err)
	}
	if err := r.SetActive(0); err != nil {
		t.Fatal(err)
	}
	if codec, _ := header(t, c.Encode(nil, in)); codec == IDZstdDict {
		t.Error("SetActive(0) did not stop dictionary encoding")
	}
	if out, err := c.Decode(nil, cur, len(in)); err != nil || !bytes.Equal(out, in) {
		t.Errorf("inactive dictionary no longer decodes: %v", err)
	}
}

// A dictionary loaded under another ID on the receiving side is a
// different dictionary: the frame is rejected, not decoded with it.
func TestDictionaryIDMismatch(t *testing.T) {
	d, err := testDictionary()
	if err != nil {
		t.Fatal(err)
	}
	send := mustNew(t, Config{Dictionaries: dictRegistry(t, 1)})
	recvReg := NewRegistry()
	if err := recvReg.Add(2, d); err != nil {
		t.Fatal(err)
	}
	recv := mustNew(t, Config{Dictionaries: recvReg})
	in := kindBatch(kindDelta, 4, 1)
	f := send.Encode(nil, in)
	if _, err := recv.Decode(nil, f, len(in)); !errors.Is(err, ErrUnknownDictionary) {
		t.Errorf("got %v, want ErrUnknownDictionary", err)
	}
	// Relabel the frame as dictionary 2: the zstd header still says 1.
	relabeled := append(appendHeader(nil, IDZstdDict, 2), f[1:]...)
	if _, err := recv.Decode(nil, relabeled, len(in)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("relabeled frame: got %v, want ErrCorrupt", err)
	}
}
