package h2stream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func headersParam(id uint32) http2.HeadersFrameParam {
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/stream"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true}
}

// fakeConn reads from in and discards what is written.
type fakeConn struct {
	in io.Reader
	net.Conn
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// clientBytes is what a client end writes to open a stream and send
// frames.
func clientBytes(frames ...[]byte) []byte {
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	_ = fr.WriteWindowUpdate(0, window-65535)
	_ = fr.WriteHeaders(headersParam(1))
	for _, f := range frames {
		_ = fr.WriteData(1, false, f)
	}
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteData(1, true, nil)
	return out.Bytes()
}

// FuzzPeek feeds a server end hostile bytes: Peek, then Accept and reads
// to the end when they name the stream. Nothing may panic, and Peek may not
// read past its bound. Seeds are in testdata/fuzz/FuzzPeek.
func FuzzPeek(f *testing.F) {
	f.Add(clientBytes([]byte("a frame"), bytes.Repeat([]byte{7}, 20000)))
	f.Add([]byte("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte(http2.ClientPreface))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Peek(&fakeConn{in: bytes.NewReader(in)}, 4<<10)
		if err != nil {
			return
		}
		if len(p.rec.buf) > 4<<10 {
			t.Fatalf("Peek kept %d bytes, beyond its bound", len(p.rec.buf))
		}
		if !p.Is("POST", "/stream") {
			replayed, _ := io.ReadAll(p.Replay())
			if !bytes.Equal(replayed, in) {
				t.Fatal("Replay did not give back every byte")
			}
			return
		}
		st, err := p.Accept(200, "x")
		if err != nil {
			return
		}
		buf := make([]byte, 512)
		for range 1000 {
			if _, err := st.Read(buf); err != nil {
				break
			}
			_, _ = st.Write(buf[:10])
		}
	})
}

// A connection that keeps sending frames before its first request is cut
// at Peek's bound.
func TestPeekBound(t *testing.T) {
	var in bytes.Buffer
	in.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&in, nil)
	for in.Len() < 64<<10 {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	}
	_ = fr.WriteHeaders(headersParam(1))
	_, err := Peek(&fakeConn{in: bytes.NewReader(in.Bytes())}, 16<<10)
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("Peek of 64 KiB of SETTINGS with a bound of 16 KiB: %v, want ErrTooLong", err)
	}
}
