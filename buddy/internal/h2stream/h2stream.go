// Package h2stream carries one full-duplex HTTP/2 stream on a connection of
// its own, with no goroutine of its own: frames are written by the goroutine
// that has them and read by the goroutine that waits for them.
//
// It is buddy's batch stream (PROTOCOL.md, 1.1). net/http's HTTP/2 client and
// server hand every frame between three or four goroutines (a reader, the
// connection's loop, the handler or the request's body pipe, and back); for
// a batch of a few records those hand-offs cost more than the batch. Here a
// round trip is one write and one read on each end.
//
// The wire is plain HTTP/2 (RFC 9113): a client end speaks to any HTTP/2
// server, and Peek lets a server route the connections whose first request
// is the stream to a server end, and hand every other one on to net/http.
// Only one stream is served per connection: others are refused
// (REFUSED_STREAM), and SETTINGS_MAX_CONCURRENT_STREAMS says 1.
//
// A Stream is used by one goroutine at a time; Close may be called from any.
package h2stream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Errors a Stream's reads and writes return (wrapped).
var (
	// ErrProtocol: the peer broke the HTTP/2 protocol, or this package's
	// use of it (a second request where one stream is served).
	ErrProtocol = errors.New("h2stream: protocol error")
	// ErrReset: the peer reset the stream or went away before it.
	ErrReset = errors.New("h2stream: stream reset by the peer")
)

const (
	// window is the flow-control window each end grants for the stream and
	// the connection. Neither end buffers more than it reads (the bytes
	// wait in the kernel's socket buffers), so a wide window costs no
	// memory and spares a WINDOW_UPDATE per frame.
	window = 1 << 30
	// maxFrame is the largest frame this end reads: the protocol's
	// default, which it never raises.
	maxFrame = 16 << 10
	// maxHeaderList bounds a request's or response's decoded header list.
	maxHeaderList = 16 << 10
	// maxStash bounds the DATA bytes read while a write waits for the
	// peer's window: a peer that sends while it grants no window is not
	// following the batch stream's lockstep.
	maxStash = 1 << 20
)

// Stream is one end of the single stream of a connection.
type Stream struct {
	conn   net.Conn
	bw     *bufio.Writer
	fr     *http2.Framer
	server bool
	id     uint32

	status int  // the response's :status (client end)
	headed bool // the stream's first HEADERS went past

	connSend, streamSend int64 // what this end may still send
	initialSend          int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	maxSend              int   // the peer's SETTINGS_MAX_FRAME_SIZE
	unacked              int64 // bytes read since the last WINDOW_UPDATE

	pending []byte // unread DATA bytes; they alias the framer's buffer
	stash   []byte // DATA bytes read while a write waited, a copy
	ended   bool   // the peer ended its side of the stream
	err     error  // sticky
}

func newStream(conn net.Conn, br *bufio.Reader, server bool) *Stream {
	bw := bufio.NewWriterSize(conn, 4<<10)
	fr := http2.NewFramer(bw, br)
	fr.SetReuseFrames()
	fr.SetMaxReadFrameSize(maxFrame)
	fr.MaxHeaderListSize = maxHeaderList
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	return &Stream{conn: conn, bw: bw, fr: fr, server: server,
		connSend: 65535, streamSend: 65535, initialSend: 65535, maxSend: 16 << 10}
}

// Dial opens the stream on conn, a connection to an HTTP/2 server (TLS with
// "h2" negotiated, or cleartext by prior knowledge), as a POST of path with
// the given content type, and returns once the response's headers came:
// Status tells what they said. Set a deadline on conn for the opening.
func Dial(conn net.Conn, scheme, authority, path, contentType string) (*Stream, error) {
	s := newStream(conn, bufio.NewReaderSize(conn, 4<<10), false)
	s.id = 1
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", scheme}, {":authority", authority}, {":path", path}, {"content-type", contentType}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) // writes to a bytes.Buffer do not fail
	}
	if _, err := s.bw.WriteString(http2.ClientPreface); err != nil {
		return nil, err
	}
	if err := s.greet(); err != nil {
		return nil, err
	}
	if err := s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
		return nil, err
	}
	if err := s.bw.Flush(); err != nil {
		return nil, err
	}
	for !s.headed {
		if err := s.next(true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// greet writes this end's SETTINGS and opens the connection's window.
func (s *Stream) greet() error {
	settings := []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: window}}
	if s.server {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	if err := s.fr.WriteSettings(settings...); err != nil {
		return err
	}
	return s.fr.WriteWindowUpdate(0, window-65535)
}

// Err is the error that ended the stream's reads or writes, if any.
func (s *Stream) Err() error { return s.err }

// Status is the response's status code (a client end's).
func (s *Stream) Status() int { return s.status }

// Read reads the stream's DATA; io.EOF once the peer ended its side.
func (s *Stream) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if len(s.stash) > 0 {
			s.pending, s.stash = s.stash, nil
			break
		}
		if s.ended {
			return 0, io.EOF
		}
		if err := s.next(false); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// Write buffers p as DATA frames within the peer's window, waiting (reading
// control frames) while the window is shut; Flush sends them.
func (s *Stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if s.err != nil {
			return written, s.err
		}
		if s.connSend <= 0 || s.streamSend <= 0 {
			if err := s.waitWindow(); err != nil {
				return written, err
			}
			continue
		}
		n := int(min(int64(len(p)), int64(s.maxSend), s.connSend, s.streamSend))
		if err := s.fr.WriteData(s.id, false, p[:n]); err != nil {
			return written, s.fail(err)
		}
		s.connSend -= int64(n)
		s.streamSend -= int64(n)
		p, written = p[n:], written+n
	}
	return written, nil
}

// Flush sends what Write buffered.
func (s *Stream) Flush() error {
	if s.err != nil {
		return s.err
	}
	return s.fail(s.bw.Flush())
}

// End ends this end's side of the stream and, on a server end, tells the
// client that the connection serves nothing more (GOAWAY); it flushes.
// A server end whose client is still sending also asks it to stop, the
// response being complete (RST_STREAM with NO_ERROR). It does not close
// the connection: see Linger.
func (s *Stream) End() error {
	if s.err != nil {
		return s.err
	}
	if err := s.fr.WriteData(s.id, true, nil); err != nil {
		return s.fail(err)
	}
	if s.server {
		if !s.ended {
			if err := s.fr.WriteRSTStream(s.id, http2.ErrCodeNo); err != nil {
				return s.fail(err)
			}
		}
		if err := s.fr.WriteGoAway(s.id, http2.ErrCodeNo, nil); err != nil {
			return s.fail(err)
		}
	}
	return s.Flush()
}

// Linger, after End, waits up to d for a peer that has not ended its side
// to close the connection, discarding what it still sends: a connection
// closed with bytes unread is reset, and the reset can reach the peer
// before the reply it has not read yet (a rejection, say), which it would
// then never see. It half-closes the connection first, so the peer reads
// to the end of the reply and then EOF.
func (s *Stream) Linger(d time.Duration) {
	if s.ended {
		return // the peer sent all it had: nothing is left unread
	}
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(d))
	_, _ = io.Copy(io.Discard, s.conn)
}

// Close closes the connection: the stream's reads and writes fail at once.
// Any goroutine may call it.
func (s *Stream) Close() error { return s.conn.Close() }

func (s *Stream) fail(err error) error {
	if err != nil && s.err == nil {
		s.err = err
	}
	return err
}

// waitWindow flushes and reads frames until the peer opens its window; DATA
// read meanwhile is kept for Read.
func (s *Stream) waitWindow() error {
	if err := s.Flush(); err != nil {
		return err
	}
	if len(s.pending) > 0 { // it aliases the framer's buffer, which the next read reuses
		s.stash = append(append([]byte(nil), s.pending...), s.stash...)
		s.pending = nil
	}
	return s.next(true)
}

// next reads one frame and acts on it. DATA goes to pending, or is copied
// to the stash when keep is set.
func (s *Stream) next(keep bool) error {
	if s.err != nil {
		return s.err
	}
	f, err := s.fr.ReadFrame()
	if err != nil {
		return s.fail(err)
	}
	return s.fail(s.handle(f, keep))
}

func (s *Stream) handle(f http2.Frame, keep bool) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		if s.server && f.StreamID > s.id {
			// A refused stream's, sent before the refusal arrived: it
			// counts against the connection's window only.
			return s.consumed(int64(f.Length))
		}
		if f.StreamID != s.id || !s.headed || s.ended {
			return fmt.Errorf("%w: DATA on stream %d", ErrProtocol, f.StreamID)
		}
		if err := s.consumed(int64(f.Length)); err != nil {
			return err
		}
		if keep {
			if len(s.stash)+len(f.Data()) > maxStash {
				return fmt.Errorf("%w: more than %d bytes sent while no window was granted", ErrProtocol, maxStash)
			}
			s.stash = append(s.stash, f.Data()...)
		} else {
			s.pending = f.Data()
		}
		s.ended = f.StreamEnded()
	case *http2.MetaHeadersFrame:
		switch {
		case s.server && f.StreamID != s.id:
			// A second request on the connection: refused, the client may
			// send it on another.
			if err := s.fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream); err != nil {
				return err
			}
			return s.bw.Flush()
		case f.StreamID != s.id:
			return fmt.Errorf("%w: HEADERS on stream %d", ErrProtocol, f.StreamID)
		case !s.headed:
			s.headed = true
			code, err := strconv.Atoi(f.PseudoValue("status"))
			if err != nil {
				return fmt.Errorf("%w: response status %q", ErrProtocol, f.PseudoValue("status"))
			}
			s.status = code
		}
		if f.StreamEnded() { // trailers, or a response without a body
			s.ended = true
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := f.ForeachSetting(s.apply); err != nil {
			return err
		}
		if err := s.fr.WriteSettingsAck(); err != nil {
			return err
		}
		return s.bw.Flush()
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		if err := s.fr.WritePing(true, f.Data); err != nil {
			return err
		}
		return s.bw.Flush()
	case *http2.WindowUpdateFrame:
		w := &s.streamSend
		switch f.StreamID {
		case 0:
			w = &s.connSend
		case s.id:
		default:
			return nil // a refused stream's
		}
		if *w += int64(f.Increment); *w > 1<<31-1 {
			return fmt.Errorf("%w: flow-control window beyond 2^31-1", ErrProtocol)
		}
	case *http2.RSTStreamFrame:
		if f.StreamID == s.id {
			return fmt.Errorf("%w: %v", ErrReset, f.ErrCode)
		}
	case *http2.GoAwayFrame:
		if f.LastStreamID < s.id || f.ErrCode != http2.ErrCodeNo {
			return fmt.Errorf("%w: GOAWAY %v (last stream %d)", ErrReset, f.ErrCode, f.LastStreamID)
		}
	}
	return nil // PRIORITY, unknown types: nothing to do
}

// apply takes one of the peer's settings.
func (s *Stream) apply(st http2.Setting) error {
	if err := st.Valid(); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	switch st.ID {
	case http2.SettingInitialWindowSize:
		s.streamSend += int64(st.Val) - s.initialSend
		s.initialSend = int64(st.Val)
	case http2.SettingMaxFrameSize:
		s.maxSend = int(st.Val)
	}
	return nil
}

// consumed counts n bytes of DATA read, and gives them back to the peer's
// window once they reach half of it.
func (s *Stream) consumed(n int64) error {
	s.unacked += n
	if s.unacked < window/2 {
		return nil
	}
	inc := uint32(s.unacked)
	s.unacked = 0
	if err := s.fr.WriteWindowUpdate(0, inc); err != nil {
		return err
	}
	if err := s.fr.WriteWindowUpdate(s.id, inc); err != nil {
		return err
	}
	return s.bw.Flush()
}
