package loadgen

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/core"
)

// Attr is one session attribute as the benchmark routes set it: a key and a
// string value (GET /bench/write?k=&v= stores a string).
type Attr struct {
	Key, Value string
}

// ReadSample reads a sample session: a JSON object of attribute name to
// value. Each value becomes the string of its compact JSON text, in key
// order.
func ReadSample(path string) ([]Attr, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSample(b)
}

// ParseSample is ReadSample on the file's bytes.
func ParseSample(b []byte) ([]Attr, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("sample session: %w", err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("sample session: no attributes")
	}
	out := make([]Attr, 0, len(m))
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) != nil { // not a JSON string: keep its text
			c, err := compactJSON(v)
			if err != nil {
				return nil, err
			}
			s = c
		}
		out = append(out, Attr{Key: k, Value: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func compactJSON(v json.RawMessage) (string, error) {
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return "", err
	}
	b, err := json.Marshal(x)
	return string(b), err
}

// EncodedSize is what attrs weigh in a Tandem session (core's
// MaxSessionSize accounting): keys plus values encoded by the JSON codec.
func EncodedSize(attrs []Attr) int {
	n := 0
	for _, a := range attrs {
		v, _ := core.JSONCodec{}.Marshal(a.Value)
		n += len(a.Key) + len(v)
	}
	return n
}

// MaxAttrValue is the largest value SizedSession puts in one attribute.
const MaxAttrValue = 4 << 10

// SizedSession returns a session of about size bytes (EncodedSize) made of
// the sample's attributes, repeated under suffixed keys ("cart.2") with
// their digits varied, and cut at the end; no value is longer than
// MaxAttrValue. The result is deterministic.
func SizedSession(sample []Attr, size int) []Attr {
	var out []Attr
	total := 0
	rng := uint64(0x9e3779b97f4a7c15)
	for round := 1; total < size; round++ {
		for _, a := range sample {
			if total >= size {
				break
			}
			key := a.Key
			val := a.Value
			if round > 1 {
				key = a.Key + "." + strconv.Itoa(round)
				b := []byte(val)
				for i, c := range b {
					if c >= '0' && c <= '9' {
						rng ^= rng << 13
						rng ^= rng >> 7
						rng ^= rng << 17
						b[i] = '0' + byte(rng%10)
					}
				}
				val = string(b)
			}
			if len(val) > MaxAttrValue {
				val = val[:MaxAttrValue]
			}
			at := Attr{Key: key, Value: val}
			w := EncodedSize([]Attr{at})
			if total+w > size {
				// cut the value so that the session ends near size
				keep := max(len(val)-(total+w-size), 1)
				at.Value = val[:keep]
				w = EncodedSize([]Attr{at})
			}
			out = append(out, at)
			total += w
		}
	}
	return out
}

// FullCopyWireSize is the size, as it would leave the node (BytesWire), of a
// batch holding one full copy of a session with attrs: the batch encoding
// of a KindFull record, compressed with cc, sealed for a peer. It is what a
// replication protocol that ships whole sessions would send per write.
func FullCopyWireSize(attrs []Attr, cc compress.Config) (raw, onWire int, err error) {
	ch := &core.Change{ID: "0123456789abcdefghijklmnopqrstuv"[:24], Base: 41, Version: 42, Full: true}
	for _, a := range attrs {
		v, _ := core.JSONCodec{}.Marshal(a.Value)
		ch.Set = append(ch.Set, core.Attr{Key: a.Key, Value: v})
	}
	sort.Slice(ch.Set, func(i, j int) bool { return ch.Set[i].Key < ch.Set[j].Key })
	return RecordWireSize(wire.Record{Kind: wire.KindFull, Change: ch}, cc)
}

// RecordWireSize is the size of a batch holding rec alone, raw and as
// sent: encoded, compressed with cc and sealed from node "n1" to "n2".
func RecordWireSize(rec wire.Record, cc compress.Config) (raw, onWire int, err error) {
	comp, err := compress.New(cc)
	if err != nil {
		return 0, 0, err
	}
	sealer, err := wire.NewSealer("n1", [][]byte{make([]byte, wire.ClusterKeySize)})
	if err != nil {
		return 0, 0, err
	}
	ch := rec.Change
	if ch.Created.IsZero() {
		c := *ch
		c.Created = timeNow()
		c.Accessed = c.Created
		rec.Change = &c
	}
	enc := wire.AppendBatch(nil, []wire.Record{rec})
	payload := comp.Encode(nil, enc)
	body := sealer.Seal(nil, "n2", wire.MsgBatch, 1, 1, payload)
	return len(enc), len(body), nil
}
