package core

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"strconv"
)

// Codec turns attribute values into bytes and back. Implementations must be
// safe for concurrent use.
type Codec interface {
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value dst points to.
	Unmarshal(data []byte, dst any) error
}

// JSONCodec encodes values with encoding/json. It is the default: it needs no
// type registration and its bytes are readable in a debugger.
type JSONCodec struct{}

// Marshal implements Codec. Strings of printable ASCII that need no escape,
// integers and booleans skip reflection: the bytes are the same as
// encoding/json's.
func (JSONCodec) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		if plainJSONString(x) {
			b := make([]byte, 0, len(x)+2)
			b = append(b, '"')
			b = append(b, x...)
			return append(b, '"'), nil
		}
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case bool:
		return strconv.AppendBool(nil, x), nil
	}
	return json.Marshal(v)
}

// Unmarshal implements Codec. A plain string (no escapes) into a *string and
// a decimal integer into an *int or *int64 skip reflection; anything else,
// and any error, goes through encoding/json, so the results are its own.
func (JSONCodec) Unmarshal(data []byte, dst any) error {
	switch d := dst.(type) {
	case *string:
		if n := len(data); n >= 2 && data[0] == '"' && data[n-1] == '"' && plainJSONString(string(data[1:n-1])) {
			*d = string(data[1 : n-1])
			return nil
		}
	case *int:
		if plainJSONInt(data) {
			if n, err := strconv.ParseInt(string(data), 10, strconv.IntSize); err == nil {
				*d = int(n)
				return nil
			}
		}
	case *int64:
		if plainJSONInt(data) {
			if n, err := strconv.ParseInt(string(data), 10, 64); err == nil {
				*d = n
				return nil
			}
		}
	}
	return json.Unmarshal(data, dst)
}

// plainJSONString reports whether s is printable ASCII that encoding/json
// writes as is between quotes (no quote, backslash or HTML character).
func plainJSONString(s string) bool {
	// Eight bytes at a time (the classic "has a byte less than n" and "has
	// a zero byte" word tests, exact as yes/no answers), then the tail.
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for len(s) >= 8 {
		_ = s[7] // one bounds check: the loads combine into one
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		// A byte below 0x20, of 0x7f or more, or equal to one of the five.
		q, bs, lt, gt, amp := w^('"'*lo), w^('\\'*lo), w^('<'*lo), w^('>'*lo), w^('&'*lo)
		m := (w-0x20*lo)&^w | (w + lo) | w |
			(q-lo)&^q | (bs-lo)&^bs | (lt-lo)&^lt | (gt-lo)&^gt | (amp-lo)&^amp
		if m&hi != 0 {
			return false
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if plainByte[s[i]] != '1' {
			return false
		}
	}
	return true
}

// plainByte[c] is '1' for the bytes plainJSONString allows: printable
// ASCII but for the quote, backslash and HTML characters.
const plainByte = "0000000000000000000000000000000011011101111111111111111111110101" +
	"1111111111111111111111111111011111111111111111111111111111111110" +
	"0000000000000000000000000000000000000000000000000000000000000000" +
	"0000000000000000000000000000000000000000000000000000000000000000"

// plainJSONInt reports whether data is a JSON integer: an optional minus and
// decimal digits without a leading zero.
func plainJSONInt(data []byte) bool {
	if len(data) > 0 && data[0] == '-' {
		data = data[1:]
	}
	if len(data) == 0 || len(data) > 19 || data[0] == '0' && len(data) > 1 {
		return false
	}
	for _, c := range data {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// GobCodec encodes values with encoding/gob. Each value is a self-contained
// gob stream (type information included), so it costs more bytes and time
// than JSON; use it for types JSON cannot represent. Interface-typed values
// need gob.Register as usual.
type GobCodec struct{}

// Marshal implements Codec.
func (GobCodec) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unmarshal implements Codec.
func (GobCodec) Unmarshal(data []byte, dst any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(dst)
}
