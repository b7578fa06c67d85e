package wire

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func wtKey(b byte) []byte { return bytes.Repeat([]byte{b}, ClusterKeySize) }

func wtSealer(t testing.TB, self string, keys ...[]byte) *Sealer {
	t.Helper()
	s, err := NewSealer(self, keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSealerErrors(t *testing.T) {
	k := wtKey(1)
	tests := []struct {
		name string
		self string
		keys [][]byte
		ok   bool
	}{
		{"one key", "a", [][]byte{k}, true},
		{"two keys", "a", [][]byte{k, wtKey(2)}, true},
		{"repeated key", "a", [][]byte{k, k}, true},
		{"64-byte self", strings.Repeat("n", 64), [][]byte{k}, true},
		{"no keys", "a", nil, false},
		{"empty key list", "a", [][]byte{}, false},
		{"16-byte key", "a", [][]byte{k[:16]}, false},
		{"31-byte key", "a", [][]byte{k[:31]}, false},
		{"33-byte key", "a", [][]byte{append(wtKey(1), 0)}, false},
		{"bad second key", "a", [][]byte{k, k[:24]}, false},
		{"nil key", "a", [][]byte{nil}, false},
		{"empty self", "", [][]byte{k}, false},
		{"65-byte self", strings.Repeat("n", 65), [][]byte{k}, false},
	}
	for _, tt := range tests {
		s, err := NewSealer(tt.self, tt.keys)
		if (err == nil) != tt.ok || (s != nil) != tt.ok {
			t.Errorf("%s: NewSealer = %v, %v; want ok %v", tt.name, s, err, tt.ok)
		}
	}
}

func TestSealOpen(t *testing.T) {
	a := wtSealer(t, "node-a", wtKey(1))
	b := wtSealer(t, "node-b", wtKey(1))
	if b.Self() != "node-b" {
		t.Fatalf("Self() = %q", b.Self())
	}
	for _, payload := range [][]byte{nil, {}, []byte("hello"), bytes.Repeat([]byte{0xAB}, 100_000)} {
		msg := a.Seal(nil, "node-b", MsgBatch, 42, 0, payload)
		if len(msg) != a.Overhead("node-b")+len(payload) {
			t.Errorf("envelope of %d bytes, Overhead says %d+%d", len(msg), a.Overhead("node-b"), len(payload))
		}
		h, got, err := b.Open([]byte("dst:"), msg, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := Header{Type: MsgBatch, From: "node-a", To: "node-b", Seq: 42}
		if h != want {
			t.Errorf("header %+v, want %+v", h, want)
		}
		if !bytes.HasPrefix(got, []byte("dst:")) || !bytes.Equal(got[4:], payload) {
			t.Errorf("payload %q, want dst: + %d bytes", got[:min(len(got), 20)], len(payload))
		}
		if len(payload) > 0 && bytes.Contains(msg, payload[:min(len(payload), 16)]) {
			t.Error("payload appears in clear in the envelope")
		}
	}
}

func TestSealLayout(t *testing.T) {
	key := wtKey(7)
	a := wtSealer(t, "aa", key)
	msg := a.Seal([]byte("xyz"), "bbb", MsgFetchReply, 0x0102030405060708, 0, []byte("p"))
	if string(msg[:3]) != "xyz" {
		t.Fatal("Seal lost dst")
	}
	msg = msg[3:]
	id := KeyID(key)
	want := append([]byte{EnvelopeVersion, byte(MsgFetchReply)}, id[:]...)
	want = append(want, 2, 'a', 'a', 3, 'b', 'b', 'b', 1, 2, 3, 4, 5, 6, 7, 8)
	if !bytes.HasPrefix(msg, want) {
		t.Fatalf("header %x, want %x", msg[:len(want)], want)
	}
	if n := len(msg) - len(want); n != nonceSize+1+tagSize {
		t.Fatalf("%d bytes after the header, want nonce+1+tag", n)
	}
	// Random nonces: the same message seals differently each time.
	other := a.Seal(nil, "bbb", MsgFetchReply, 0x0102030405060708, 0, []byte("p"))
	if bytes.Equal(msg, other) {
		t.Fatal("two seals of one message are identical")
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := wtKey(1), wtKey(2)
	oldOnly := wtSealer(t, "a", oldKey)
	both := wtSealer(t, "b", newKey, oldKey)
	newOnly := wtSealer(t, "b", newKey)
	reversed := wtSealer(t, "b", oldKey, newKey)

	msg := oldOnly.Seal(nil, "b", MsgPing, 1, 0, []byte("ping"))
	for name, s := range map[string]*Sealer{"[new, old]": both, "[old, new]": reversed} {
		if _, p, err := s.Open(nil, msg, 0); err != nil || string(p) != "ping" {
			t.Errorf("old-key message under %s: %q, %v", name, p, err)
		}
	}
	if _, _, err := newOnly.Open(nil, msg, 0); !errors.Is(err, ErrAuth) {
		t.Errorf("old-key message under [new]: err = %v, want ErrAuth", err)
	}

	// [new, old] seals with new: the key ID is the new key's wherever it
	// sits in the list, and [old] alone cannot open it.
	fromBoth := wtSealer(t, "a", newKey, oldKey).Seal(nil, "b", MsgPing, 2, 0, []byte("x"))
	if id := KeyID(newKey); !bytes.Equal(fromBoth[2:6], id[:]) {
		t.Errorf("key ID %x, want %x", fromBoth[2:6], id)
	}
	if _, _, err := wtSealer(t, "b", oldKey).Open(nil, fromBoth, 0); !errors.Is(err, ErrAuth) {
		t.Errorf("new-key message under [old]: err = %v, want ErrAuth", err)
	}
	if _, _, err := reversed.Open(nil, fromBoth, 0); err != nil {
		t.Errorf("new-key message under [old, new]: %v", err)
	}
}

func TestOpenWrongKeySameID(t *testing.T) {
	// A message whose key ID names a key the receiver holds but whose
	// ciphertext was made under another key fails authentication.
	a := wtSealer(t, "a", wtKey(1))
	b := wtSealer(t, "b", wtKey(2))
	msg := a.Seal(nil, "b", MsgPing, 1, 0, []byte("x"))
	id := KeyID(wtKey(2))
	copy(msg[2:6], id[:])
	if _, _, err := b.Open(nil, msg, 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
}

func TestOpenTamper(t *testing.T) {
	a := wtSealer(t, "node-a", wtKey(1))
	b := wtSealer(t, "node-b", wtKey(1))
	msg := a.Seal(nil, "node-b", MsgBatch, 7, 0, []byte("some payload bytes"))
	for i := range msg {
		for _, flip := range []byte{0x01, 0x80, 0xFF} {
			bad := bytes.Clone(msg)
			bad[i] ^= flip
			dst := make([]byte, 3, 64)
			h, out, err := b.Open(dst, bad, 0)
			switch {
			case err == nil:
				t.Fatalf("byte %d ^ %#x: opened as %+v", i, flip, h)
			case i == 0 && !errors.Is(err, ErrVersion):
				t.Fatalf("byte 0: err = %v, want ErrVersion", err)
			case i > 0 && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed):
				t.Fatalf("byte %d ^ %#x: err = %v, want ErrAuth or ErrMalformed", i, flip, err)
			}
			if len(out) != 3 || h != (Header{}) {
				t.Fatalf("byte %d: error returned %d bytes and header %+v", i, len(out), h)
			}
		}
	}
	for n := range len(msg) {
		if _, _, err := b.Open(nil, msg[:n], 0); !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d: err = %v", n, err)
		}
	}
	if _, _, err := b.Open(nil, append(bytes.Clone(msg), 0), 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("extra byte: err = %v, want ErrAuth", err)
	}
	if _, _, err := b.Open(nil, msg, 0); err != nil {
		t.Fatalf("the untouched message: %v", err)
	}
}

func TestOpenRecipient(t *testing.T) {
	a := wtSealer(t, "a", wtKey(1))
	b := wtSealer(t, "b", wtKey(1))
	c := wtSealer(t, "c", wtKey(1))
	toC := a.Seal(nil, "c", MsgBatch, 1, 0, []byte("x"))
	if _, _, err := b.Open(nil, toC, 0); !errors.Is(err, ErrAuth) {
		t.Errorf("message for c opened by b: err = %v, want ErrAuth", err)
	}
	if _, _, err := c.Open(nil, toC, 0); err != nil {
		t.Errorf("message for c opened by c: %v", err)
	}
	// A node's own message, reflected back to it, is for someone else.
	if _, _, err := a.Open(nil, toC, 0); !errors.Is(err, ErrAuth) {
		t.Errorf("reflected message: err = %v, want ErrAuth", err)
	}
	// Recipients that no node can have.
	for _, to := range []string{"", strings.Repeat("x", 65), strings.Repeat("y", 300)} {
		msg := a.Seal(nil, to, MsgBatch, 1, 0, nil)
		if _, _, err := b.Open(nil, msg, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("recipient of %d bytes: err = %v, want ErrMalformed", len(to), err)
		}
	}
}

func TestOpenHeaderErrors(t *testing.T) {
	b := wtSealer(t, "b", wtKey(1))
	good := wtSealer(t, "a", wtKey(1)).Seal(nil, "b", MsgPing, 1, 0, nil)
	mod := func(f func(m []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"version 0", []byte{0}, ErrVersion},
		{"version 1", mod(func(m []byte) []byte { m[0] = 1; return m }), ErrVersion},
		{"version 3", mod(func(m []byte) []byte { m[0] = 3; return m }), ErrVersion},
		{"only version", []byte{EnvelopeVersion}, ErrMalformed},
		{"zero-length sender", mod(func(m []byte) []byte { m[6] = 0; return m }), ErrMalformed},
		{"65-byte sender", append(append([]byte{EnvelopeVersion, 5, 0, 0, 0, 0, 65}, bytes.Repeat([]byte{'a'}, 65)...), make([]byte, 64)...), ErrMalformed},
		{"sender past end", append([]byte{EnvelopeVersion, 5, 0, 0, 0, 0, 64}, make([]byte, 40)...), ErrMalformed},
		{"unknown key", mod(func(m []byte) []byte { m[2] ^= 1; return m }), ErrAuth},
		{"no tag", good[:len(good)-tagSize], ErrMalformed},
	}
	for _, tt := range tests {
		if _, _, err := b.Open(nil, tt.msg, 0); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSealConcurrent(t *testing.T) {
	a := wtSealer(t, "a", wtKey(1), wtKey(2))
	b := wtSealer(t, "b", wtKey(3), wtKey(1))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var buf, out []byte
			for i := range 200 {
				seq := uint64(g*1000 + i)
				buf = a.Seal(buf[:0], "b", MsgBatch, seq, 0, []byte("payload"))
				h, p, err := b.Open(out[:0], buf, 0)
				if err != nil || h.Seq != seq || string(p) != "payload" {
					t.Errorf("%+v %q %v", h, p, err)
					return
				}
				out = p
			}
		})
	}
	wg.Wait()
}

func TestSealOpenAllocs(t *testing.T) {
	a := wtSealer(t, "a", wtKey(1))
	b := wtSealer(t, "b", wtKey(1))
	payload := make([]byte, 1024)
	buf := make([]byte, 0, 2048)
	out := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(50, func() { buf = a.Seal(buf[:0], "b", MsgBatch, 1, 0, payload) }); n != 0 {
		t.Errorf("Seal into a large enough dst: %v allocations, want 0", n)
	}
	msg := a.Seal(nil, "b", MsgBatch, 1, 0, payload)
	if n := testing.AllocsPerRun(50, func() { _, out, _ = b.Open(out[:0], msg, 0) }); n > 1 {
		t.Errorf("Open into a large enough dst: %v allocations, want at most 1 (the sender ID)", n)
	}
}

func TestMsgTypeString(t *testing.T) {
	names := map[MsgType]string{
		MsgBatch: "batch", MsgBatchReply: "batch-reply", MsgFetch: "fetch", MsgFetchReply: "fetch-reply",
		MsgPing: "ping", MsgPong: "pong", MsgTransfer: "transfer", MsgTransferReply: "transfer-reply",
		MsgLeave: "leave", MsgLeaveReply: "leave-reply", 0: "msg(0)", 200: "msg(200)",
	}
	for typ, want := range names {
		if got := typ.String(); got != want {
			t.Errorf("MsgType(%d).String() = %q, want %q", byte(typ), got, want)
		}
	}
	// Each request's reply is the next value.
	for _, req := range []MsgType{MsgBatch, MsgFetch, MsgPing, MsgTransfer, MsgLeave} {
		if req%2 != 1 {
			t.Errorf("request type %v is even", req)
		}
	}
}

// seenCount returns how many numbers w holds as seen.
func (w *ReplayWindow) seenCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hi - w.lo
}

func TestReplayWindow(t *testing.T) {
	const base = 1_700_000_000_000_000_000 // a sender's clock
	type step struct {
		seq  uint64
		want bool
	}
	// fill accepts n numbers from from on, every stride-th.
	fill := func(from, n, stride uint64) []step {
		var s []step
		for i := range n {
			s = append(s, step{from + i*stride, true})
		}
		return s
	}
	cat := func(parts ...[]step) []step { return slices.Concat(parts...) }
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{base, true}, {base + 1, true}, {base + 2, true}, {base + 3, true}}},
		{"duplicate", []step{{base, true}, {base, false}, {base + 1, true}, {base + 1, false}, {base, false}}},
		{"out of order", []step{
			{base + 10, true}, {base + 5, true}, {base + 7, true}, {base + 5, false},
			{base + 9, true}, {base + 11, true}, {base + 7, false}, {base + 6, true},
		}},
		{"a full window forgets its smallest", cat(fill(base, ReplayWindowSize, 1), []step{
			{base + ReplayWindowSize, true},
			{base, false},     // gone: too old to tell
			{base + 1, false}, // the smallest held
			{base + ReplayWindowSize - 1, false},
		})},
		{"late by the window but one", cat([]step{{base, true}}, fill(base+2, ReplayWindowSize-1, 1), []step{
			{base + 1, true}, // late, above the smallest held
			{base + 1, false},
			{base, false},
		})},
		{"gaps do not matter", cat(fill(base, 100, 1e9), []step{{base + 5, true}, {base + 1e9 + 5, true}, {base + 5, false}})},
		{"a forged high number refuses nothing else", cat([]step{{math.MaxUint64, true}}, fill(base, 3*ReplayWindowSize, 1000), []step{
			{math.MaxUint64, false},
			{base + 3*ReplayWindowSize*1000, true},
		})},
		{"restarted sender", []step{{base, true}, {base + 1, true}, {base + 60e9, true}, {base + 60e9 + 1, true}, {base + 1, false}}},
		{"zero first", []step{{0, true}, {0, false}, {1, true}, {0, false}}},
		{"near the top", []step{{math.MaxUint64 - 1, true}, {math.MaxUint64, true}, {math.MaxUint64, false}, {math.MaxUint64 - 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w ReplayWindow
			for i, s := range tt.steps {
				if got := w.Accept(s.seq); got != s.want {
					t.Fatalf("step %d: Accept(base%+d) = %v, want %v", i, int64(s.seq-base), got, s.want)
				}
			}
			if n := w.seenCount(); n > ReplayWindowSize {
				t.Fatalf("window holds %d numbers", n)
			}
		})
	}
}

func TestReplayWindowEveryNumberOnce(t *testing.T) {
	// Arrivals shuffled within a span smaller than the window are each
	// accepted exactly once, and the window holds exactly the recent ones.
	var w ReplayWindow
	const n = 5000
	order := make([]uint64, 0, n)
	for blk := uint64(0); blk < n; blk += 500 {
		for i := uint64(499); i < 500; i-- { // each block of 500 backwards
			order = append(order, 1000+blk+i)
		}
	}
	for _, seq := range order {
		if !w.Accept(seq) {
			t.Fatalf("fresh %d rejected", seq)
		}
	}
	for _, seq := range order {
		if w.Accept(seq) {
			t.Fatalf("replayed %d accepted", seq)
		}
	}
	if got := w.seenCount(); got != ReplayWindowSize {
		t.Fatalf("window holds %d numbers, want %d", got, ReplayWindowSize)
	}
}

func TestReplayWindowConcurrent(t *testing.T) {
	var w ReplayWindow
	var mu sync.Mutex
	accepted := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for seq := uint64(1); seq <= 500; seq++ { // every goroutine offers the same numbers
				if w.Accept(seq) {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if accepted != 500 {
		t.Fatalf("%d accepted, want each of 500 numbers once", accepted)
	}
}

func wtBenchSeal(b *testing.B, size int) {
	a := wtSealer(b, "node-a", wtKey(1))
	payload := bytes.Repeat([]byte("x"), size)
	buf := a.Seal(nil, "node-b", MsgBatch, 1, 0, payload)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		buf = a.Seal(buf[:0], "node-b", MsgBatch, 1, 0, payload)
	}
}

func wtBenchOpen(b *testing.B, size int) {
	a := wtSealer(b, "node-a", wtKey(1))
	r := wtSealer(b, "node-b", wtKey(1))
	msg := a.Seal(nil, "node-b", MsgBatch, 1, 0, bytes.Repeat([]byte("x"), size))
	out := make([]byte, 0, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if _, out, err = r.Open(out[:0], msg, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal8K(b *testing.B) { wtBenchSeal(b, 8<<10) }
func BenchmarkOpen8K(b *testing.B) { wtBenchOpen(b, 8<<10) }

func TestReplayWindowModel(t *testing.T) {
	// Random arrivals against the rules written plainly: the window holds
	// the ReplayWindowSize largest numbers accepted; a number is accepted
	// iff it is not held and, once the window is full, above the smallest
	// held.
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var w ReplayWindow
		var top []uint64 // ascending
		next := uint64(rng.Int64N(1 << 40))
		for i := range 5000 {
			var seq uint64
			switch r := rng.IntN(100); {
			case r < 50:
				seq = next + uint64(rng.IntN(3)) // mostly just ahead
			case r < 90:
				seq = next - uint64(rng.IntN(1100)) // around the window's bottom
			default:
				seq = next + uint64(rng.IntN(3000)) // jumps
			}
			_, held := slices.BinarySearch(top, seq)
			want := !held && (len(top) < ReplayWindowSize || seq > top[0])
			if got := w.Accept(seq); got != want {
				t.Fatalf("round %d step %d: Accept(%d) = %v, want %v", round, i, seq, got, want)
			}
			if want {
				at, _ := slices.BinarySearch(top, seq)
				top = slices.Insert(top, at, seq)
				if len(top) > ReplayWindowSize {
					top = top[1:]
				}
			}
			next = max(next, seq)
		}
	}
}

// An envelope opens only under the recipient's boot it was sealed for: a
// message captured before the recipient restarted (a new boot) never opens
// after it, and one sealed for boot 0 opens only as boot 0.
func TestOpenBoot(t *testing.T) {
	a, b := wtSealer(t, "a", wtKey(1)), wtSealer(t, "b", wtKey(1))
	const boot, next = 0x1111_2222_3333_4444, 0x5555_6666_7777_8888
	msg := a.Seal(nil, "b", MsgLeave, 9, boot, []byte("bye"))
	h, p, err := b.Open(nil, msg, boot)
	if err != nil || string(p) != "bye" || h.Boot != boot {
		t.Fatalf("same boot: %+v %q %v", h, p, err)
	}
	for _, other := range []uint64{0, next, boot ^ 1} {
		if _, _, err := b.Open(nil, msg, other); !errors.Is(err, ErrAuth) {
			t.Errorf("boot %#x: err = %v, want ErrAuth", other, err)
		}
	}
	hello := a.Seal(nil, "b", MsgPing, 10, 0, nil)
	if _, _, err := b.Open(nil, hello, next); !errors.Is(err, ErrAuth) {
		t.Errorf("boot-0 envelope opened under a boot: %v", err)
	}
	if _, _, err := b.Open(nil, hello, 0); err != nil {
		t.Errorf("boot-0 envelope: %v", err)
	}
}

// The common case: numbers from the sender's clock, in order.
func BenchmarkReplayWindowInOrder(b *testing.B) {
	var w ReplayWindow
	seq := uint64(1_700_000_000_000_000_000)
	b.ReportAllocs()
	for b.Loop() {
		seq += 1000
		if !w.Accept(seq) {
			b.Fatal("refused")
		}
	}
}
