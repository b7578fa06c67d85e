package core

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
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

// Marshal implements Codec.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSONCodec) Unmarshal(data []byte, dst any) error { return json.Unmarshal(data, dst) }

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
