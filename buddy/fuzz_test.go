package buddy

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/core"
)

// FuzzStream feeds arbitrary request bodies to a node's batch stream
// handler: it never panics, answers only well-formed reply frames, stops
// after the first rejection, and applies nothing unless a frame was
// accepted.
func FuzzStream(f *testing.F) {
	ms := cluster(f, 2, func(c *Config) { c.MaxBodySize = 4 << 10 })
	b := ms[1].node
	seq := uint64(1 << 40)
	sealer, err := wire.NewSealer("n1", [][]byte{testClusterKey})
	if err != nil {
		f.Fatal(err)
	}
	valid := func(recs []wire.Record) []byte {
		seq++
		return streamFrame(sealer.Seal(nil, "n2", wire.MsgBatch, seq, b.boot, b.comp.Encode(nil, wire.AppendBatch(nil, recs))))
	}
	f.Add(valid(wtSampleRecords()[:2]))
	f.Add(append(valid(wtSampleRecords()[2:4]), valid(wtSampleRecords()[4:])...))
	f.Add(binary.AppendUvarint(nil, 1<<20))
	f.Add(append(binary.AppendUvarint(nil, 64), "truncated"...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		before := b.Stats().RecordsApplied
		req := httptest.NewRequest(http.MethodPost, pathStream, bytes.NewReader(body))
		req.ProtoMajor, req.ProtoMinor = 2, 0
		rec := httptest.NewRecorder()
		b.serveStream(rec, req)
		statuses, err := readReplyFrames(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		accepted := slices.Contains(statuses, streamOK)
		if !accepted && b.Stats().RecordsApplied != before {
			t.Fatal("records applied without an accepted frame")
		}
	})
}

// wtSampleRecords are records of every kind, for seeds.
func wtSampleRecords() []wire.Record {
	at := time.Unix(1700000000, 0)
	return []wire.Record{
		{Kind: wire.KindFull, Change: &core.Change{ID: "s1", Version: 1, Full: true, Set: []core.Attr{{Key: "a", Value: []byte("1")}}, Created: at, Accessed: at}},
		{Kind: wire.KindDelta, Change: &core.Change{ID: "s1", Base: 1, Version: 2, Set: []core.Attr{{Key: "b", Value: []byte("2")}}, Accessed: at}},
		{Kind: wire.KindDelta, Change: &core.Change{ID: "s1", Base: 2, Version: 3, Deleted: []string{"a"}, Accessed: at}},
		{Kind: wire.KindTouch, Change: &core.Change{ID: "s1", Accessed: at}},
		{Kind: wire.KindFull, Change: &core.Change{ID: "s2", PrevID: "s0", Version: 4, Full: true, Created: at, Accessed: at}},
		{Kind: wire.KindRemove, Change: &core.Change{ID: "s2", Base: 4, Version: 5, Removed: true}},
		{Kind: wire.KindMove, Change: &core.Change{ID: "s1", Epoch: 1}, To: "n3"},
	}
}
