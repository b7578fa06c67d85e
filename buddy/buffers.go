package buddy

import (
	"io"
	"slices"
	"sync"
)

// maxPooledBuffer is the largest buffer bufPool keeps; larger ones (state
// transfer batches) are left to the garbage collector.
const maxPooledBuffer = 1 << 20

// bodyHint caps how much of a request's declared Content-Length is
// allocated before the bytes arrive, so that an unauthenticated header
// cannot make the node allocate MaxBodySize up front.
const bodyHint = 64 << 10

// bufPool recycles the byte buffers of the replication path: request
// bodies, opened payloads, encoded and decompressed batches. Every user
// copies what it keeps out of a buffer before putting it back.
type bufPool struct{ p sync.Pool }

func (p *bufPool) get() *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4<<10)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	p.p.Put(b)
}

// appendBody appends everything r yields to dst, like io.ReadAll. hint, when
// positive, is the expected size (at most bodyHint of it is reserved).
func appendBody(dst []byte, r io.Reader, hint int64) ([]byte, error) {
	if hint > 0 {
		dst = slices.Grow(dst, int(min(hint, bodyHint))+1) // +1: room to see EOF
	}
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, max(cap(dst), 512))
		}
		k, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+k]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
