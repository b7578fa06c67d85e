package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// wtSampleRecords returns one record of every kind, with the edge cases a
// round trip must keep: empty lists, zero times, empty values, PrevID.
func wtSampleRecords() []Record {
	t1 := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.UTC)
	t2 := t1.Add(90 * time.Second)
	return []Record{
		{Kind: KindDelta, Change: &core.Change{
			ID: "sess-a", Base: 4, Version: 5, Epoch: 3,
			Set:      []core.Attr{{Key: "cart", Value: []byte(`{"n":3}`)}, {Key: "user", Value: []byte(`"ann"`)}},
			Deleted:  []string{"flash", "tmp"},
			Created:  t1,
			Accessed: t2,
		}},
		{Kind: KindDelta, Change: &core.Change{ID: "sess-b", Base: 1, Version: 2, Clear: true}},
		{Kind: KindDelta, Change: &core.Change{ID: "sess-c", Version: 1,
			Set: []core.Attr{{Key: "", Value: []byte{}}, {Key: "k", Value: nil}}}},
		{Kind: KindFull, Change: &core.Change{
			ID: "sess-d", PrevID: "sess-old", Version: 9, Full: true,
			Set:     []core.Attr{{Key: "a", Value: []byte{0, 1, 2, 255}}},
			Created: t1, Accessed: t2,
		}},
		{Kind: KindFull, Change: &core.Change{ID: "sess-e", Version: 1, Full: true}},
		{Kind: KindRemove, Change: &core.Change{ID: "sess-f", Base: 7, Version: 8, Epoch: 2, Removed: true}},
		{Kind: KindTouch, Change: &core.Change{ID: "sess-g", Epoch: 1 << 40, Accessed: t2}},
		{Kind: KindTouch, Change: &core.Change{ID: "sess-h"}},
		{Kind: KindMove, Change: &core.Change{ID: "sess-j", Epoch: 7}, To: "n3"},
		{Kind: KindDelta, Change: &core.Change{ID: "sess-i", Base: MaxVersion - 2, Version: MaxVersion - 1,
			Created: time.Unix(0, -1), Accessed: time.Unix(0, 1<<62)}},
		{Kind: KindFull, Change: &core.Change{ID: "sess-k", PrevID: "sess-k0", PrevUntil: t2, Version: 3, Full: true}},
	}
}

// wtEqualChange compares the fields that a record of kind k carries.
func wtEqualChange(k Kind, a, b *core.Change) error {
	if a.ID != b.ID {
		return fmt.Errorf("ID %q != %q", a.ID, b.ID)
	}
	if a.Epoch != b.Epoch {
		return fmt.Errorf("Epoch %d != %d", a.Epoch, b.Epoch)
	}
	switch k {
	case KindMove:
		return nil
	case KindTouch:
		if !a.Accessed.Equal(b.Accessed) {
			return fmt.Errorf("Accessed %v != %v", a.Accessed, b.Accessed)
		}
		return nil
	case KindRemove:
		if a.Base != b.Base || a.Version != b.Version || a.Removed != b.Removed {
			return fmt.Errorf("remove %d/%d/%v != %d/%d/%v", a.Base, a.Version, a.Removed, b.Base, b.Version, b.Removed)
		}
		return nil
	}
	if a.PrevID != b.PrevID || a.Base != b.Base || a.Version != b.Version || a.Full != b.Full || a.Clear != b.Clear || a.Removed != b.Removed {
		return fmt.Errorf("header %+v != %+v", *a, *b)
	}
	if !a.Created.Equal(b.Created) || !a.Accessed.Equal(b.Accessed) || !a.PrevUntil.Equal(b.PrevUntil) {
		return fmt.Errorf("times %v/%v != %v/%v", a.Created, a.Accessed, b.Created, b.Accessed)
	}
	if len(a.Set) != len(b.Set) || len(a.Deleted) != len(b.Deleted) {
		return fmt.Errorf("lengths %d/%d != %d/%d", len(a.Set), len(a.Deleted), len(b.Set), len(b.Deleted))
	}
	for i := range a.Set {
		if a.Set[i].Key != b.Set[i].Key || !bytes.Equal(a.Set[i].Value, b.Set[i].Value) {
			return fmt.Errorf("Set[%d] %q=%q != %q=%q", i, a.Set[i].Key, a.Set[i].Value, b.Set[i].Key, b.Set[i].Value)
		}
	}
	for i := range a.Deleted {
		if a.Deleted[i] != b.Deleted[i] {
			return fmt.Errorf("Deleted[%d] %q != %q", i, a.Deleted[i], b.Deleted[i])
		}
	}
	return nil
}

func wtEqualRecords(a, b []Record) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d records != %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Kind != b[i].Kind {
			return fmt.Errorf("record %d: kind %v != %v", i, a[i].Kind, b[i].Kind)
		}
		if a[i].To != b[i].To {
			return fmt.Errorf("record %d: To %q != %q", i, a[i].To, b[i].To)
		}
		if err := wtEqualChange(a[i].Kind, a[i].Change, b[i].Change); err != nil {
			return fmt.Errorf("record %d (%v): %w", i, a[i].Kind, err)
		}
	}
	return nil
}

func TestBatchRoundTrip(t *testing.T) {
	recs := wtSampleRecords()
	enc := AppendBatch(nil, recs)
	got, err := DecodeBatch(enc, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if err := wtEqualRecords(recs, got); err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		c := r.Change
		if c.Full != (r.Kind == KindFull) {
			t.Errorf("record %d: Full = %v for %v", i, c.Full, r.Kind)
		}
		if c.Removed != (r.Kind == KindRemove) {
			t.Errorf("record %d: Removed = %v for %v", i, c.Removed, r.Kind)
		}
		if r.Kind == KindDelta || r.Kind == KindFull {
			if (len(c.Set) == 0) != (c.Set == nil) || (len(c.Deleted) == 0) != (c.Deleted == nil) {
				t.Errorf("record %d: empty lists should decode as nil", i)
			}
			for _, a := range c.Set {
				if a.Value == nil {
					t.Errorf("record %d: value of %q decoded as nil", i, a.Key)
				}
			}
		}
	}
	// Zero times stay zero, not 1970.
	if !got[1].Change.Created.IsZero() || !got[1].Change.Accessed.IsZero() || !got[7].Change.Accessed.IsZero() {
		t.Error("zero time did not decode as the zero time")
	}
	// Encoding the decoded batch gives the same bytes.
	if again := AppendBatch(nil, got); !bytes.Equal(again, enc) {
		t.Errorf("re-encoding differs:\n%x\n%x", enc, again)
	}
}

func TestBatchAppendsToDst(t *testing.T) {
	prefix := []byte("prefix")
	enc := AppendBatch(prefix, wtSampleRecords()[:2])
	if !bytes.HasPrefix(enc, prefix) {
		t.Fatal("AppendBatch lost dst")
	}
	if _, err := DecodeBatch(enc[len(prefix):], DefaultLimits()); err != nil {
		t.Fatal(err)
	}
}

func TestBatchEmpty(t *testing.T) {
	enc := AppendBatch(nil, nil)
	if !bytes.Equal(enc, []byte{WireVersion, 0}) {
		t.Fatalf("empty batch = %x", enc)
	}
	got, err := DecodeBatch(enc, Limits{})
	if err != nil || len(got) != 0 {
		t.Fatalf("DecodeBatch(empty) = %v, %v", got, err)
	}
}

func TestBatchFullFlagFollowsKind(t *testing.T) {
	// Kind decides; Change.Full and Change.Removed are not encoded.
	recs := []Record{
		{Kind: KindDelta, Change: &core.Change{ID: "x", Version: 1, Full: true}},
		{Kind: KindFull, Change: &core.Change{ID: "y", Version: 1}},
	}
	got, err := DecodeBatch(AppendBatch(nil, recs), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Change.Full || !got[1].Change.Full {
		t.Fatalf("Full = %v, %v; want false, true", got[0].Change.Full, got[1].Change.Full)
	}
}

func TestBatchTimes(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 1),
		time.Unix(0, -1),
		time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2200, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600)),
		time.Now(), // with a monotonic reading
	} {
		recs := []Record{
			{Kind: KindDelta, Change: &core.Change{ID: "s", Version: 1, Created: tm, Accessed: tm}},
			{Kind: KindTouch, Change: &core.Change{ID: "s", Accessed: tm}},
		}
		got, err := DecodeBatch(AppendBatch(nil, recs), DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if !r.Change.Accessed.Equal(tm) || r.Change.Accessed.IsZero() != tm.IsZero() {
				t.Errorf("%v: Accessed decoded as %v", tm, r.Change.Accessed)
			}
		}
		if !got[0].Change.Created.Equal(tm) {
			t.Errorf("%v: Created decoded as %v", tm, got[0].Change.Created)
		}
	}
}

func TestBatchNoAliasing(t *testing.T) {
	recs := wtSampleRecords()
	enc := AppendBatch(nil, recs)
	got, err := DecodeBatch(enc, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0xAA
	}
	if err := wtEqualRecords(recs, got); err != nil {
		t.Fatalf("decoded records changed with the input buffer: %v", err)
	}
	// Values must not share backing arrays either: appending to one value
	// must not write into the next.
	set := got[0].Change.Set
	before := string(set[1].Value)
	_ = append(set[0].Value, 'X', 'X', 'X', 'X', 'X', 'X', 'X', 'X')
	if string(set[1].Value) != before {
		t.Fatal("values share memory")
	}
}

// wtLimitBatch builds a batch that sits exactly at lim, plus delta on the
// field named by which.
func wtLimitBatch(lim Limits, which string, delta int) []byte {
	nKeys, keyLen, valLen, nRecs, idLen := 2, 3, 3, 1, 8
	switch which {
	case "attrs", "deleted":
		nKeys = lim.MaxAttrs + delta
	case "key", "deletedkey":
		keyLen = lim.MaxKey + delta
	case "value":
		valLen = lim.MaxValue + delta
	case "records":
		nRecs = lim.MaxRecords + delta
	case "id", "previd":
		idLen = MaxIDLen + delta
	}
	var recs []Record
	for r := range nRecs {
		c := &core.Change{ID: fmt.Sprintf("%0*d", idLen, r), Version: 1}
		if which == "previd" {
			c.ID = "s"
			c.PrevID = strings.Repeat("p", idLen)
		}
		if which == "deleted" || which == "deletedkey" {
			for k := range nKeys {
				c.Deleted = append(c.Deleted, fmt.Sprintf("%0*d", keyLen, k))
			}
		} else {
			for k := range nKeys {
				c.Set = append(c.Set, core.Attr{Key: fmt.Sprintf("%0*d", keyLen, k), Value: bytes.Repeat([]byte("v"), valLen)})
			}
		}
		recs = append(recs, Record{Kind: KindDelta, Change: c})
	}
	return AppendBatch(nil, recs)
}

func TestBatchLimits(t *testing.T) {
	lim := Limits{MaxRecords: 5, MaxKey: 10, MaxValue: 20, MaxAttrs: 4}
	for _, which := range []string{"records", "attrs", "deleted", "key", "deletedkey", "value", "id", "previd"} {
		t.Run(which, func(t *testing.T) {
			if _, err := DecodeBatch(wtLimitBatch(lim, which, 0), lim); err != nil {
				t.Errorf("at the limit: %v", err)
			}
			_, err := DecodeBatch(wtLimitBatch(lim, which, 1), lim)
			if !errors.Is(err, ErrLimit) {
				t.Errorf("one above the limit: err = %v, want ErrLimit", err)
			}
		})
	}
}

func TestBatchDefaultLimits(t *testing.T) {
	lim := DefaultLimits()
	want := Limits{MaxRecords: 4096, MaxKey: 1024, MaxValue: 1 << 20, MaxAttrs: 4096}
	if lim != want {
		t.Fatalf("DefaultLimits() = %+v, want %+v", lim, want)
	}
	// Zero limits mean the defaults, and the defaults hold at their bound.
	for _, which := range []string{"records", "attrs", "key", "value"} {
		if _, err := DecodeBatch(wtLimitBatch(lim, which, 0), Limits{}); err != nil {
			t.Errorf("%s at the default limit: %v", which, err)
		}
		if _, err := DecodeBatch(wtLimitBatch(lim, which, 1), Limits{}); !errors.Is(err, ErrLimit) {
			t.Errorf("%s above the default limit: err = %v, want ErrLimit", which, err)
		}
	}
}

func TestBatchTruncated(t *testing.T) {
	enc := AppendBatch(nil, wtSampleRecords())
	for i := range len(enc) {
		got, err := DecodeBatch(enc[:i], DefaultLimits())
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated at %d of %d: got %d records, err %v; want ErrMalformed", i, len(enc), len(got), err)
		}
		if got != nil {
			t.Fatalf("truncated at %d: records returned with an error", i)
		}
	}
}

func TestBatchTrailingBytes(t *testing.T) {
	for _, recs := range [][]Record{nil, wtSampleRecords()} {
		enc := append(AppendBatch(nil, recs), 0)
		if _, err := DecodeBatch(enc, DefaultLimits()); !errors.Is(err, ErrMalformed) {
			t.Errorf("trailing byte after %d records: err = %v, want ErrMalformed", len(recs), err)
		}
	}
}

func TestBatchVersion(t *testing.T) {
	enc := AppendBatch(nil, wtSampleRecords())
	for _, v := range []byte{0, 1, 3, 255} {
		enc[0] = v
		_, err := DecodeBatch(enc, DefaultLimits())
		if !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: err = %v, want ErrVersion", v, err)
		}
	}
	if _, err := DecodeBatch(nil, DefaultLimits()); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil input: err = %v, want ErrMalformed", err)
	}
}

func TestBatchMalformed(t *testing.T) {
	uv := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	one := func(rec ...byte) []byte { return append([]byte{WireVersion, 1}, rec...) }
	delta := func(flags byte) []byte {
		// kind, ID "s", PrevID "", base 0, version 1, epoch 1, flags, times 0, 0 sets, 0 deleted
		return one(byte(KindDelta), 1, 's', 0, 0, 1, 1, flags, 0, 0, 0, 0)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"valid delta", delta(0), nil},
		{"valid clear", delta(flagClear), nil},
		{"reserved flag", delta(4), ErrMalformed},
		{"grace window end without a previous ID", delta(flagPrevUntil), ErrMalformed},
		{"reserved high flag", delta(0x80), ErrMalformed},
		{"kind 0", one(0, 1, 's', 0), ErrMalformed},
		{"kind 6", one(6, 1, 's', 0), ErrMalformed},
		{"valid move", one(byte(KindMove), 1, 's', 3, 2, 'n', '2'), nil},
		{"move without new owner", one(byte(KindMove), 1, 's', 3), ErrMalformed},
		{"move to no one", one(byte(KindMove), 1, 's', 3, 0), ErrMalformed},
		{"move epoch at MaxVersion", append(uv(one(byte(KindMove), 1, 's'), MaxVersion), 1, 'n'), ErrLimit},
		{"kind 255", one(255, 1, 's', 0), ErrMalformed},
		{"empty ID", one(byte(KindTouch), 0, 0, 0), ErrMalformed},
		{"empty remove ID", one(byte(KindRemove), 0, 0, 0, 0, 0), ErrMalformed},
		{"remove without epoch", one(byte(KindRemove), 1, 's', 0, 1), ErrMalformed},
		{"touch without epoch", one(byte(KindTouch), 1, 's'), ErrMalformed},
		{"varint overflow", one(byte(KindTouch), 1, 's', 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrMalformed},
		{"count overflow", []byte{WireVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformed},
		{"2^60 records", uv([]byte{WireVersion}, 1<<60), ErrMalformed},
		{"2^63 records", append(uv([]byte{WireVersion}, 1<<63), 4, 1, 's', 0), ErrMalformed},
		{"more records than bytes", append(uv([]byte{WireVersion}, 100), 4, 1, 's', 0), ErrMalformed},
		{"2^62 sets", uv(one(byte(KindDelta), 1, 's', 0, 0, 1, 1, 0, 0, 0), 1<<62), ErrMalformed},
		{"2^62 deleted", uv(one(byte(KindDelta), 1, 's', 0, 0, 1, 1, 0, 0, 0, 0), 1<<62), ErrMalformed},
		{"huge key length", uv(one(byte(KindDelta), 1, 's', 0, 0, 1, 1, 0, 0, 0, 1), 1<<62), ErrMalformed},
		{"huge value length", uv(one(byte(KindDelta), 1, 's', 0, 0, 1, 1, 0, 0, 0, 1, 1, 'k'), 1<<40), ErrMalformed},
		{"huge ID length", uv(one(byte(KindTouch)), 1<<50), ErrMalformed},
		{"delta skipping versions", one(byte(KindDelta), 1, 's', 0, 3, 7, 1, 0, 0, 0, 0, 0), ErrMalformed},
		{"version at MaxVersion", append(uv(uv(one(byte(KindDelta), 1, 's', 0), MaxVersion-1), MaxVersion), 1, 0, 0, 0, 0, 0), ErrLimit},
		{"epoch at MaxVersion", uv(one(byte(KindRemove), 1, 's', 0, 1), MaxVersion), ErrLimit},
		{"touch epoch at MaxVersion", uv(one(byte(KindTouch), 1, 's'), MaxVersion), ErrLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeBatch(tt.in, DefaultLimits())
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBatchHugeCountsDoNotAllocate(t *testing.T) {
	// A few bytes claiming a huge count fail before allocating for it.
	in := binary.AppendUvarint([]byte{WireVersion}, 1<<60)
	in = append(in, make([]byte, 64)...)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := DecodeBatch(in, DefaultLimits()); err == nil {
			t.Fatal("decoded")
		}
	})
	// Only the error (message, wrapping) allocates.
	if allocs > 10 {
		t.Fatalf("%v allocations for a rejected 2^60 count", allocs)
	}
}

func TestBatchErrorContext(t *testing.T) {
	recs := wtSampleRecords()
	recs[2].Change.Set[0].Key = strings.Repeat("k", 11)
	_, err := DecodeBatch(AppendBatch(nil, recs), Limits{MaxKey: 10})
	if !errors.Is(err, ErrLimit) {
		t.Fatal(err)
	}
	for _, want := range []string{"record 2", "MaxKey 10", "offset"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, rep := range []BatchReply{
		{},
		{NeedFull: []string{"a"}},
		{NeedFull: []string{"sess-1", "sess-2", strings.Repeat("x", MaxIDLen)}},
		{Fenced: []Fence{{ID: "sess-3", Holder: "n2", Epoch: 7}, {ID: "sess-4", Epoch: 1 << 63}}},
		{NeedFull: []string{"a"}, Fenced: []Fence{{ID: "b", Holder: strings.Repeat("h", MaxIDLen)}}},
		{Refused: []string{"c", "d"}},
	} {
		enc := AppendReply([]byte("pre"), rep)
		if !bytes.HasPrefix(enc, []byte("pre")) {
			t.Fatal("AppendReply lost dst")
		}
		enc = enc[3:]
		got, err := DecodeReply(enc, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if len(got.NeedFull) != len(rep.NeedFull) || (len(rep.NeedFull) == 0) != (got.NeedFull == nil) {
			t.Fatalf("got %q, want %q", got.NeedFull, rep.NeedFull)
		}
		for i := range rep.NeedFull {
			if got.NeedFull[i] != rep.NeedFull[i] {
				t.Fatalf("got %q, want %q", got.NeedFull, rep.NeedFull)
			}
		}
		if len(got.Fenced) != len(rep.Fenced) || (len(rep.Fenced) == 0) != (got.Fenced == nil) {
			t.Fatalf("got %+v, want %+v", got.Fenced, rep.Fenced)
		}
		for i := range rep.Fenced {
			if got.Fenced[i] != rep.Fenced[i] {
				t.Fatalf("got %+v, want %+v", got.Fenced, rep.Fenced)
			}
		}
		if !slices.Equal(got.Refused, rep.Refused) || (len(rep.Refused) == 0) != (got.Refused == nil) {
			t.Fatalf("got %q, want %q", got.Refused, rep.Refused)
		}
		for i := range len(enc) {
			if _, err := DecodeReply(enc[:i], DefaultLimits()); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated at %d: err = %v", i, err)
			}
		}
		if _, err := DecodeReply(append(enc, 0), DefaultLimits()); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte: err = %v", err)
		}
	}
}

func TestReplyErrors(t *testing.T) {
	ids := func(n int) BatchReply {
		var r BatchReply
		for i := range n {
			r.NeedFull = append(r.NeedFull, fmt.Sprint(i))
		}
		return r
	}
	lim := Limits{MaxRecords: 3}
	if _, err := DecodeReply(AppendReply(nil, ids(3)), lim); err != nil {
		t.Errorf("at MaxRecords: %v", err)
	}
	if _, err := DecodeReply(AppendReply(nil, ids(4)), lim); !errors.Is(err, ErrLimit) {
		t.Errorf("above MaxRecords: err = %v, want ErrLimit", err)
	}
	long := BatchReply{NeedFull: []string{strings.Repeat("x", MaxIDLen+1)}}
	if _, err := DecodeReply(AppendReply(nil, long), lim); !errors.Is(err, ErrLimit) {
		t.Errorf("ID above MaxIDLen: err = %v, want ErrLimit", err)
	}
	empty := BatchReply{NeedFull: []string{""}}
	if _, err := DecodeReply(AppendReply(nil, empty), lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty ID: err = %v, want ErrMalformed", err)
	}
	if _, err := DecodeReply([]byte{1, 0}, lim); !errors.Is(err, ErrVersion) {
		t.Errorf("version 1: err = %v, want ErrVersion", err)
	}
	if _, err := DecodeReply([]byte{WireVersion, 0}, lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("no fence list: err = %v, want ErrMalformed", err)
	}
	if _, err := DecodeReply([]byte{WireVersion, 0, 0}, lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("no refused list: err = %v, want ErrMalformed", err)
	}
	fences := func(n int) BatchReply {
		var r BatchReply
		for i := range n {
			r.Fenced = append(r.Fenced, Fence{ID: fmt.Sprint(i)})
		}
		return r
	}
	if _, err := DecodeReply(AppendReply(nil, fences(3)), lim); err != nil {
		t.Errorf("fences at MaxRecords: %v", err)
	}
	if _, err := DecodeReply(AppendReply(nil, fences(4)), lim); !errors.Is(err, ErrLimit) {
		t.Errorf("fences above MaxRecords: err = %v, want ErrLimit", err)
	}
	longHolder := BatchReply{Fenced: []Fence{{ID: "s", Holder: strings.Repeat("x", MaxIDLen+1)}}}
	if _, err := DecodeReply(AppendReply(nil, longHolder), lim); !errors.Is(err, ErrLimit) {
		t.Errorf("holder above MaxIDLen: err = %v, want ErrLimit", err)
	}
	huge := binary.AppendUvarint([]byte{WireVersion}, 1<<60)
	if _, err := DecodeReply(huge, lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("2^60 IDs: err = %v, want ErrMalformed", err)
	}
	if _, err := DecodeReply(nil, lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil: err = %v, want ErrMalformed", err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindDelta: "delta", KindFull: "full", KindRemove: "remove", KindTouch: "touch", KindMove: "move", 9: "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}

// wtBenchRecords returns n deltas of three small attributes each, the shape
// of a typical group-committed batch.
func wtBenchRecords(n int) []Record {
	now := time.Now()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Kind: KindDelta, Change: &core.Change{
			ID:   fmt.Sprintf("q2vWk1m7Yb0cT5xHf8LzR3nA-%08d", i),
			Base: uint64(i), Version: uint64(i) + 1,
			Set: []core.Attr{
				{Key: "cart", Value: []byte(`{"items":3,"total":4250}`)},
				{Key: "last_page", Value: []byte(`"/products/42"`)},
				{Key: "user_id", Value: []byte(`18231`)},
			},
			Created: now.Add(-time.Hour), Accessed: now,
		}}
	}
	return recs
}

func BenchmarkAppendBatch64(b *testing.B) {
	recs := wtBenchRecords(64)
	buf := AppendBatch(nil, recs)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendBatch(buf[:0], recs)
	}
}

func BenchmarkDecodeBatch64(b *testing.B) {
	enc := AppendBatch(nil, wtBenchRecords(64))
	lim := DefaultLimits()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(enc, lim); err != nil {
			b.Fatal(err)
		}
	}
}
