package h2stream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ErrTooLong: a connection's frames before its first request exceeded
// Peek's bound.
var ErrTooLong = errors.New("h2stream: too many bytes before the first request")

// Peeked is a server connection whose first bytes were read: either the
// HTTP/2 preface and the frames up to its first request's headers (H2), or
// bytes that are not HTTP/2's preface.
type Peeked struct {
	conn net.Conn
	rec  *recorder
	br   *bufio.Reader
	s    *Stream

	h2           bool
	method, path string
	settings     []http2.Setting // the client's, seen before its request
	acks         int             // how many SETTINGS frames they came in
	connWindow   int64           // its WINDOW_UPDATEs of the connection
	endStream    bool
}

// Peek reads from conn until it knows what the first request of the
// connection is: HTTP/2's preface, then frames up to the first HEADERS.
// It reads at most max bytes; set a deadline on conn first. Bytes that are
// not the preface end it at once (an HTTP/1 request, say): Replay gives
// them back.
func Peek(conn net.Conn, max int) (*Peeked, error) {
	rec := &recorder{r: conn, max: max, on: true}
	p := &Peeked{conn: conn, rec: rec}
	preface := []byte(http2.ClientPreface)
	var got [24]byte
	n := 0
	for n < len(preface) {
		m, err := rec.Read(got[n:])
		n += m
		if !bytes.HasPrefix(preface, got[:n]) {
			return p, nil // not HTTP/2: net/http's to answer
		}
		if err != nil {
			return nil, err
		}
	}
	p.h2 = true
	p.br = bufio.NewReaderSize(rec, 4<<10)
	p.s = newStream(conn, p.br, true)
	for {
		f, err := p.s.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			p.acks++
			if err := f.ForeachSetting(func(s http2.Setting) error {
				p.settings = append(p.settings, s)
				return nil
			}); err != nil {
				return nil, err
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				p.connWindow += int64(f.Increment)
			}
		case *http2.MetaHeadersFrame:
			p.s.id = f.StreamID
			p.method, p.path = f.PseudoValue("method"), f.PseudoValue("path")
			p.endStream = f.StreamEnded()
			return p, nil
		case *http2.PriorityFrame:
		default:
			// Something a first request does not begin with: net/http's
			// to refuse.
			return p, nil
		}
	}
}

// Is reports whether the connection's first request is an HTTP/2 request
// of method to path.
func (p *Peeked) Is(method, path string) bool {
	return p.h2 && p.s.id != 0 && p.method == method && p.path == path
}

// Replay returns the connection, reading first the bytes Peek read.
func (p *Peeked) Replay() net.Conn {
	return &replayConn{Conn: p.conn, r: io.MultiReader(bytes.NewReader(p.rec.buf), p.conn)}
}

// Accept answers the peeked request with status and content type and
// returns the server end of its stream.
func (p *Peeked) Accept(status int, contentType string) (*Stream, error) {
	if !p.h2 || p.s.id == 0 {
		return nil, fmt.Errorf("%w: no request to accept", ErrProtocol)
	}
	s := p.s
	p.rec.on, p.rec.buf = false, nil
	s.headed = true
	s.ended = p.endStream
	for _, st := range p.settings {
		if err := s.apply(st); err != nil {
			return nil, err
		}
	}
	if s.connSend += p.connWindow; s.connSend > 1<<31-1 {
		return nil, fmt.Errorf("%w: flow-control window beyond 2^31-1", ErrProtocol)
	}
	if err := s.greet(); err != nil {
		return nil, err
	}
	for range p.acks {
		if err := s.fr.WriteSettingsAck(); err != nil {
			return nil, err
		}
	}
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: fmt.Sprint(status)})
	_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: contentType})
	if err := s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
		return nil, err
	}
	return s, s.Flush()
}

// recorder keeps what it reads while on, up to max bytes.
type recorder struct {
	r   io.Reader
	buf []byte
	max int
	on  bool
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.on {
		if len(r.buf)+n > r.max {
			return 0, ErrTooLong
		}
		r.buf = append(r.buf, p[:n]...)
	}
	return n, err
}

// replayConn is a connection whose first bytes are read from elsewhere.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
