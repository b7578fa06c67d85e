package wire

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemsession/tandem/core"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the f.Add seeds below
// are built from the current encoders so they follow the format as it is.

// wtFuzzKey is the cluster key of FuzzOpen; its envelopes in
// testdata/fuzz/FuzzOpen were sealed under it.
func wtFuzzKey() []byte {
	k := make([]byte, ClusterKeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// wtFuzzLimits are small enough for the fuzzer to reach every limit.
func wtFuzzLimits() Limits { return Limits{MaxRecords: 16, MaxKey: 16, MaxValue: 64, MaxAttrs: 8} }

// wtWireError reports whether err is one of the errors a decoder may return.
func wtWireError(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrLimit) || errors.Is(err, ErrVersion)
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, wtSampleRecords()[:4]))
	f.Add(AppendBatch(nil, wtSampleRecords()[4:]))
	f.Add(AppendBatch(nil, nil))
	f.Add(AppendBatch(nil, wtBenchRecords(2)))
	f.Add([]byte{WireVersion, 1, byte(KindTouch), 1, 's', 1, 2})
	f.Add([]byte{WireVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b) // decoded from a copy, which is then overwritten
		recs, err := DecodeBatch(in, wtFuzzLimits())
		if err != nil {
			if !wtWireError(err) {
				t.Fatalf("error wraps no wire error: %v", err)
			}
			if recs != nil {
				t.Fatal("records returned with an error")
			}
			return
		}
		enc := AppendBatch(nil, recs)
		if len(enc) > len(b) {
			t.Fatalf("re-encoding is longer (%d) than the input (%d)", len(enc), len(b))
		}
		again, err := DecodeBatch(enc, wtFuzzLimits())
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if err := wtEqualRecords(recs, again); err != nil {
			t.Fatalf("re-encoding decodes differently: %v", err)
		}
		if !bytes.Equal(AppendBatch(nil, again), enc) {
			t.Fatal("encoding is not canonical")
		}
		for i := range in { // the decoded records do not alias the input
			in[i] ^= 0xFF
		}
		if !bytes.Equal(AppendBatch(nil, recs), enc) {
			t.Fatal("decoded records alias the input")
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add(AppendReply(nil, BatchReply{}))
	f.Add(AppendReply(nil, BatchReply{NeedFull: []string{"a", "sess-2"}}))
	f.Add(AppendReply(nil, BatchReply{Fenced: []Fence{{ID: "s", Holder: "n2", Epoch: 4}}}))
	f.Add([]byte{WireVersion, 1, 0, 0, 0})
	f.Add([]byte{WireVersion, 2, 1, 'a', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := DecodeReply(b, wtFuzzLimits())
		if err != nil {
			if !wtWireError(err) {
				t.Fatalf("error wraps no wire error: %v", err)
			}
			return
		}
		enc := AppendReply(nil, rep)
		if len(enc) > len(b) {
			t.Fatalf("re-encoding is longer (%d) than the input (%d)", len(enc), len(b))
		}
		again, err := DecodeReply(enc, wtFuzzLimits())
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if len(again.NeedFull) != len(rep.NeedFull) {
			t.Fatalf("re-encoding decodes differently: %q != %q", again.NeedFull, rep.NeedFull)
		}
		for i := range rep.NeedFull {
			if again.NeedFull[i] != rep.NeedFull[i] || rep.NeedFull[i] == "" || len(rep.NeedFull[i]) > MaxIDLen {
				t.Fatalf("re-encoding decodes differently: %q != %q", again.NeedFull, rep.NeedFull)
			}
		}
		if len(again.Fenced) != len(rep.Fenced) {
			t.Fatalf("re-encoding decodes differently: %+v != %+v", again.Fenced, rep.Fenced)
		}
		for i, fc := range rep.Fenced {
			if again.Fenced[i] != fc || fc.ID == "" || len(fc.ID) > MaxIDLen || len(fc.Holder) > MaxIDLen {
				t.Fatalf("re-encoding decodes differently: %+v != %+v", again.Fenced, rep.Fenced)
			}
		}
		if !slices.Equal(again.Refused, rep.Refused) {
			t.Fatalf("re-encoding decodes differently: %q != %q", again.Refused, rep.Refused)
		}
	})
}

func FuzzOpen(f *testing.F) {
	key := wtFuzzKey()
	from, err := NewSealer("node-a", [][]byte{key})
	if err != nil {
		f.Fatal(err)
	}
	to, err := NewSealer("node-b", [][]byte{key})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(from.Seal(nil, "node-b", MsgBatch, 1_700_000_000_000_000_001, 0, []byte("payload")))
	f.Add(from.Seal(nil, "node-b", MsgPong, 0, 0, nil))
	f.Add(from.Seal(nil, "node-c", MsgPing, 1, 0, []byte("not for node-b")))
	f.Add(from.Seal(nil, "node-b", MsgBatch, 2, 0, AppendBatch(nil, wtSampleRecords())))
	f.Add([]byte{EnvelopeVersion})
	f.Fuzz(func(t *testing.T, msg []byte) {
		dst := []byte("dst")
		h, out, err := to.Open(dst, msg, 0)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrAuth) {
				t.Fatalf("error wraps no envelope error: %v", err)
			}
			if string(out) != "dst" || h != (Header{}) {
				t.Fatalf("error returned output %q, header %+v", out, h)
			}
			return
		}
		payload := out[len(dst):]
		if h.To != "node-b" || h.From == "" || len(h.From) > MaxIDLen {
			t.Fatalf("opened header %+v", h)
		}
		if want := len(msg) - to.Overhead(h.To) - len(h.From) + len("node-b"); len(payload) != want {
			t.Fatalf("payload of %d bytes from a %d-byte envelope, want %d", len(payload), len(msg), want)
		}
		// Resealed by its sender, the message opens to the same.
		s, err := NewSealer(h.From, [][]byte{key})
		if err != nil {
			t.Fatalf("sender %q: %v", h.From, err)
		}
		h2, p2, err := to.Open(nil, s.Seal(nil, h.To, h.Type, h.Seq, 0, payload), 0)
		if err != nil || h2 != h || !bytes.Equal(p2, payload) {
			t.Fatalf("resealed: %+v %q %v; want %+v %q", h2, p2, err, h, payload)
		}
	})
}

// wtSeeds are the stored seeds of the decoder targets, built from the
// encoders so that they follow the format as it is; TestWriteSeeds writes
// them to testdata/fuzz when TANDEM_WRITE_SEEDS=1.
func wtSeeds() map[string][]byte {
	all := AppendBatch(nil, wtSampleRecords()[:7])
	delta := func(epoch, flags byte) []byte {
		return []byte{WireVersion, 1, byte(KindDelta), 1, 'z', 0, 0, 1, epoch, flags, 0, 0, 0, 0}
	}
	touch := []byte{WireVersion, 1, byte(KindTouch), 6, 's', 'e', 's', 's', '-', 'd', 1, 2}
	longKey := []byte{WireVersion, 1, byte(KindDelta), 1, 'k', 0, 0, 0, 1, 0, 0, 0, 1, 17}
	longKey = append(append(longKey, "abcdefghijklmnopq"...), 1, 'v', 0)
	return map[string][]byte{
		"FuzzDecodeBatch/valid-all-kinds":         all,
		"FuzzDecodeBatch/valid-empty":             AppendBatch(nil, nil),
		"FuzzDecodeBatch/valid-zero-times":        delta(1, 0),
		"FuzzDecodeBatch/limit-long-key":          longKey,
		"FuzzDecodeBatch/malformed-huge-count":    {WireVersion, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10},
		"FuzzDecodeBatch/malformed-reserved-flag": delta(1, 2),
		"FuzzDecodeBatch/malformed-trailing":      append(bytes.Clone(touch), 0),
		"FuzzDecodeBatch/malformed-truncated":     all[:len(all)/2],
		"FuzzDecodeBatch/malformed-unknown-kind":  {WireVersion, 1, 9, 1, 's', 1, 0},
		"FuzzDecodeBatch/wrong-version":           append([]byte{1}, all[1:]...),
		"FuzzDecodeReply/valid-empty":             AppendReply(nil, BatchReply{}),
		"FuzzDecodeReply/valid-ids":               AppendReply(nil, BatchReply{NeedFull: []string{"sess-a", "sess-b"}, Fenced: []Fence{{ID: "sess-c", Holder: "n2", Epoch: 5}}, Refused: []string{"sess-d"}}),
		"FuzzDecodeReply/malformed-empty-id":      {WireVersion, 1, 0, 0, 0},
		"FuzzDecodeReply/malformed-huge-count":    {WireVersion, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40},
		"FuzzDecodeReply/malformed-truncated":     {WireVersion, 1, 6, 's', 'e'},
		"FuzzDecodeReply/malformed-fence":         {WireVersion, 0, 1, 1, 's', 1},
		"FuzzDecodeReply/malformed-refused":       {WireVersion, 0, 0, 1, 0},
		"FuzzDecodeReply/wrong-version":           {1, 0},
	}
}

func TestWriteSeeds(t *testing.T) {
	if os.Getenv("TANDEM_WRITE_SEEDS") != "1" {
		t.Skip("set TANDEM_WRITE_SEEDS=1 to rewrite testdata/fuzz from the encoders")
	}
	seeds := wtSeeds()
	// FuzzOpen's envelopes carry random nonces: written, not compared.
	from, err := NewSealer("node-a", [][]byte{wtFuzzKey()})
	if err != nil {
		t.Fatal(err)
	}
	batch := from.Seal(nil, "node-b", MsgBatch, 1_700_000_000_000_000_001, 0, AppendBatch(nil, wtSampleRecords()[:3]))
	tampered := bytes.Clone(batch)
	tampered[len(tampered)-1] ^= 1
	sender := bytes.Clone(batch)
	sender[6] = 200
	wrongVersion := bytes.Clone(batch)
	wrongVersion[0] = 1
	other, err := NewSealer("node-a", [][]byte{bytes.Repeat([]byte{7}, ClusterKeySize)})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"valid-batch":             batch,
		"valid-empty-ping":        from.Seal(nil, "node-b", MsgPing, 5, 0, nil),
		"valid-reply":             from.Seal(nil, "node-b", MsgBatchReply, 1_700_000_000_000_000_001, 0, AppendReply(nil, BatchReply{})),
		"tampered-tag":            tampered,
		"truncated":               batch[:40],
		"malformed-sender-length": sender,
		"unknown-key":             other.Seal(nil, "node-b", MsgPing, 5, 0, nil),
		"wrong-recipient":         from.Seal(nil, "node-c", MsgPing, 5, 0, nil),
		"wrong-version":           wrongVersion,
		"other-boot":              from.Seal(nil, "node-b", MsgLeave, 6, 0x1234, nil),
	} {
		seeds["FuzzOpen/"+name] = b
	}
	for name, b := range clusterSeeds() {
		seeds["FuzzClusterMessages/"+name] = b
	}
	for name, b := range seeds {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join("testdata", "fuzz", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeedsStored checks that the stored seeds are the ones wtSeeds and
// clusterSeeds build.
func TestSeedsStored(t *testing.T) {
	all := wtSeeds()
	for name, b := range clusterSeeds() {
		all["FuzzClusterMessages/"+name] = b
	}
	for name, want := range all {
		got, err := wtReadSeed(filepath.Join("testdata", "fuzz", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: stored seed differs (%v): run TANDEM_WRITE_SEEDS=1 go test -run TestWriteSeeds", name, err)
		}
	}
}

// TestFuzzCorpus checks that the stored seeds still mean what their names
// say: "valid-*" seeds decode or open, every other seed is rejected.
func TestFuzzCorpus(t *testing.T) {
	open, err := NewSealer("node-b", [][]byte{wtFuzzKey()})
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]func([]byte) error{
		"FuzzDecodeBatch": func(b []byte) error { _, err := DecodeBatch(b, wtFuzzLimits()); return err },
		"FuzzDecodeReply": func(b []byte) error { _, err := DecodeReply(b, wtFuzzLimits()); return err },
		"FuzzOpen":        func(b []byte) error { _, _, err := open.Open(nil, b, 0); return err },
	}
	for name, try := range targets {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no seeds (%v)", name, err)
		}
		for _, file := range files {
			b, err := wtReadSeed(file)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			err = try(b)
			if valid := strings.HasPrefix(filepath.Base(file), "valid-"); valid != (err == nil) {
				t.Errorf("%s: err = %v", file, err)
			}
		}
	}
}

// wtReadSeed reads a one-[]byte seed in the "go test fuzz v1" format.
func wtReadSeed(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		return nil, errors.New("not a one-[]byte fuzz seed")
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	return []byte(s), err
}

// FuzzClusterMessages feeds arbitrary payloads to the decoders of the
// cluster messages and the stream frames (the first byte picks one): they
// never panic, fail only with wire errors, and what they accept encodes
// back to a payload that decodes the same.
func FuzzClusterMessages(f *testing.F) {
	for _, b := range clusterSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		which, b := in[0]%6, in[1:]
		switch which {
		case 0:
			p, err := DecodePing(b)
			if err == nil {
				again, err := DecodePing(AppendPing(nil, p))
				if err != nil || again.Incarnation != p.Incarnation || again.Boot != p.Boot || again.Settings != p.Settings ||
					again.Draining != p.Draining || !slices.Equal(again.CookieKeys, p.CookieKeys) {
					t.Fatalf("ping %+v re-decodes as %+v, %v", p, again, err)
				}
			} else if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
		case 1:
			fe, err := DecodeFetch(b)
			if err == nil {
				again, err := DecodeFetch(AppendFetch(nil, fe))
				if err != nil || again != fe {
					t.Fatalf("fetch %+v re-decodes as %+v, %v", fe, again, err)
				}
			} else if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
		case 2:
			rep, err := DecodeFetchReply(b, "s", wtFuzzLimits())
			if err == nil {
				if _, err := DecodeFetchReply(AppendFetchReply(nil, rep), "s", wtFuzzLimits()); err != nil {
					t.Fatalf("fetch reply %+v does not re-decode: %v", rep, err)
				}
			} else if !wtWireError(err) {
				t.Fatal(err)
			}
		case 3:
			tr, err := DecodeTransfer(b)
			if err == nil {
				if again, err := DecodeTransfer(AppendTransfer(nil, tr)); err != nil || again != tr {
					t.Fatalf("transfer %+v re-decodes as %+v, %v", tr, again, err)
				}
			} else if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
		case 4:
			l, err := DecodeLeave(b)
			if err == nil {
				if again, err := DecodeLeave(AppendLeave(nil, l)); err != nil || again != l {
					t.Fatalf("leave %+v re-decodes as %+v, %v", l, again, err)
				}
			} else if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
		case 5:
			r := bytes.NewReader(b)
			size, err := ReadFrameSize(r, 1<<10)
			if err == nil && size > 1<<10 {
				t.Fatalf("frame of %d bytes above the bound", size)
			}
			r = bytes.NewReader(b)
			if status, n, err := ReadReplyHeader(r, 1<<10); err == nil && (n > 1<<10 || status > 999) {
				t.Fatalf("reply frame %d/%d beyond its bounds", status, n)
			}
		}
	})
}

// clusterSeeds are FuzzClusterMessages' seeds: a valid message of each
// kind (its selector byte first) and a few broken ones.
func clusterSeeds() map[string][]byte {
	sel := func(k byte, b []byte) []byte { return append([]byte{k}, b...) }
	return map[string][]byte{
		"valid-ping":           sel(0, AppendPing(nil, Ping{Incarnation: 1 << 60, Boot: 7, Settings: 9, CookieKeys: []uint64{1, 2}})),
		"valid-ping-draining":  sel(0, AppendPing(nil, Ping{Incarnation: 5, Draining: true})),
		"valid-fetch":          sel(1, AppendFetch(nil, Fetch{Incarnation: 3, Proof: "cookie", ID: "sess-a"})),
		"valid-fetch-found":    sel(2, AppendFetchReply(nil, FetchReply{Status: FetchFound, Copy: &core.Change{ID: "s", Version: 2, Epoch: 1, Full: true}})),
		"valid-fetch-redirect": sel(2, AppendFetchReply(nil, FetchReply{Status: FetchRedirect, Redirect: "n2"})),
		"valid-transfer":       sel(3, AppendTransfer(nil, Transfer{Op: TransferPromote, Incarnation: 11})),
		"valid-leave":          sel(4, AppendLeave(nil, Leave{Incarnation: 12})),
		"valid-frame":          sel(5, AppendFrame(nil, []byte("envelope"))),
		"ping-too-many-keys":   sel(0, append(AppendPing(nil, Ping{Incarnation: 1})[:18], 200)),
		"fetch-huge-proof":     sel(1, append([]byte{1}, 0xff, 0xff, 0x03)),
		"fetch-reply-bad":      sel(2, []byte{9}),
		"transfer-bad-op":      sel(3, []byte{7, 1}),
		"frame-huge":           sel(5, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}),
	}
}
