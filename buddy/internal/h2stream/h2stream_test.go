package h2stream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoHandler answers 200, then reads frames (4-byte length, bytes) and
// echoes each once it has all of it, as buddy's batch stream does.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-test")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	for {
		var size [4]byte
		if _, err := io.ReadFull(r.Body, size[:]); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// framed is p behind its 4-byte length.
func framed(p []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...) }

// serveH2C serves h on a loopback listener with net/http's h2c server.
func serveH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true)
	srv := &http.Server{Protocols: &p, Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *Stream {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	st, err := Dial(c, "http", addr, "/stream", "application/x-test")
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// roundTrip writes p framed and reads len(p) bytes back.
func roundTrip(t *testing.T, st *Stream, p []byte) []byte {
	t.Helper()
	if _, err := st.Write(framed(p)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := st.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	got := make([]byte, len(p))
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

// The client end speaks to net/http's server: small frames, and a frame
// larger than the server's window (1 MiB by default), which the client may
// send only as the server's WINDOW_UPDATEs come.
func TestClientAgainstNetHTTP(t *testing.T) {
	st := dial(t, serveH2C(t, http.HandlerFunc(echoHandler)))
	if st.Status() != http.StatusOK {
		t.Fatalf("status %d", st.Status())
	}
	for i := range 100 {
		p := bytes.Repeat([]byte{byte(i)}, 300)
		if got := roundTrip(t, st, p); !bytes.Equal(got, p) {
			t.Fatalf("round trip %d: got %d bytes, not the frame", i, len(got))
		}
	}
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if got := roundTrip(t, st, big); !bytes.Equal(got, big) {
		t.Fatal("the 3 MiB frame came back changed")
	}
}

func TestClientSeesStatus(t *testing.T) {
	addr := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no stream here", http.StatusMethodNotAllowed)
	}))
	st := dial(t, addr)
	if st.Status() != http.StatusMethodNotAllowed {
		t.Fatalf("status %d, want 405", st.Status())
	}
	body, err := io.ReadAll(st)
	if err != nil || !bytes.Contains(body, []byte("no stream here")) {
		t.Fatalf("body %q, %v", body, err)
	}
}

// router serves, on one listener, the connections that begin with a POST
// of /stream with an echo of its own ends, and hands the others to
// net/http's server.
type router struct {
	ln    net.Listener
	next  chan net.Conn
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func (r *router) Accept() (net.Conn, error) {
	select {
	case c := <-r.next:
		return c, nil
	case <-r.done:
		return nil, net.ErrClosed
	}
}
func (r *router) Addr() net.Addr { return r.ln.Addr() }
func (r *router) Close() error   { return nil }

func serveRouted(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &router{ln: ln, next: make(chan net.Conn), done: make(chan struct{})}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "net/http "+req.URL.Path)
	})}
	r.wg.Go(func() { _ = srv.Serve(r) })
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			r.wg.Go(func() { r.route(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		close(r.done)
		srv.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return ln.Addr().String()
}

func (r *router) route(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	p, err := Peek(c, 64<<10)
	if err != nil {
		c.Close()
		return
	}
	if !p.Is("POST", "/stream") {
		_ = c.SetDeadline(time.Time{})
		select {
		case r.next <- p.Replay():
		case <-r.done:
			c.Close()
		}
		return
	}
	defer c.Close()
	st, err := p.Accept(http.StatusOK, "application/x-test")
	if err != nil {
		return
	}
	for {
		var size [4]byte
		if _, err := io.ReadFull(st, size[:]); err != nil {
			if errors.Is(err, io.EOF) {
				_ = st.End()
			}
			return
		}
		buf := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(st, buf); err != nil {
			return
		}
		if _, err := st.Write(buf); err != nil || st.Flush() != nil {
			return
		}
	}
}

// Both ends this package's, through Peek and Accept.
func TestOwnEnds(t *testing.T) {
	st := dial(t, serveRouted(t))
	if st.Status() != http.StatusOK {
		t.Fatalf("status %d", st.Status())
	}
	for i := range 100 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i*200) // up to beyond one frame
		if got := roundTrip(t, st, p); !bytes.Equal(got, p) {
			t.Fatalf("round trip %d changed the bytes", i)
		}
	}
	big := bytes.Repeat([]byte("tandem"), 1<<20)
	if got := roundTrip(t, st, big); !bytes.Equal(got, big) {
		t.Fatal("the 6 MiB frame came back changed")
	}
}

// net/http's client on a routed port: a stream request reaches the own
// server end (and ends cleanly with its body), other requests and HTTP/1
// reach net/http with the bytes Peek read replayed.
func TestRoutedPortServesNetHTTPClients(t *testing.T) {
	addr := serveRouted(t)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &p}}
	defer h2.CloseIdleConnections()

	resp, err := h2.Post("http://"+addr+"/stream", "application/x-test", bytes.NewReader(framed([]byte("echo me"))))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "echo me" || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream over net/http's client: %d %q %v", resp.StatusCode, body, err)
	}
	for _, path := range []string{"/ping", "/fetch"} {
		resp, err := h2.Post("http://"+addr+path, "text/plain", bytes.NewReader([]byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "net/http "+path || resp.ProtoMajor != 2 {
			t.Fatalf("%s: HTTP/%d %q", path, resp.ProtoMajor, body)
		}
	}
	h1 := &http.Client{Transport: &http.Transport{}}
	defer h1.CloseIdleConnections()
	resp, err = h1.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "net/http /stream" || resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1: HTTP/%d %q", resp.ProtoMajor, body)
	}
}

// A second request on a stream's connection is refused, and the stream
// goes on.
func TestSecondStreamRefused(t *testing.T) {
	addr := serveRouted(t)
	st := dial(t, addr)
	// A second HEADERS frame on stream 3, written on the same connection.
	if err := st.fr.WriteHeaders(headersParam(3)); err != nil {
		t.Fatal(err)
	}
	if err := st.fr.WriteData(3, false, framed([]byte("ignored"))); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, st, []byte("still here")); string(got) != "still here" {
		t.Fatalf("got %q", got)
	}
}

// Close from another goroutine ends a read that waits.
func TestCloseEndsARead(t *testing.T) {
	st := dial(t, serveRouted(t))
	_ = st.conn.SetDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := st.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	st.Close()
	if err := <-done; err == nil {
		t.Fatal("the read returned no error after Close")
	}
}

// rawServer accepts one connection on loopback and runs script on it with
// a framer, after the client's preface, answering the request's headers
// with 200 first.
func rawServer(t *testing.T, settings []http2.Setting, script func(fr *http2.Framer, bw *bufio.Writer)) string {
	t.Helper()
	addr, stop := acceptOne(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := io.ReadFull(br, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		bw := bufio.NewWriter(c)
		fr := http2.NewFramer(bw, br)
		_ = fr.WriteSettings(settings...)
		var hdr bytes.Buffer
		_ = hpack.NewEncoder(&hdr).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndHeaders: true})
		script(fr, bw)
		_ = bw.Flush()
		// Drain until the client goes.
		_, _ = io.Copy(io.Discard, br)
	})
	t.Cleanup(stop)
	return addr
}

// A peer that resets the stream ends it with ErrReset.
func TestResetByThePeer(t *testing.T) {
	st := dial(t, rawServer(t, nil, func(fr *http2.Framer, bw *bufio.Writer) {
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	}))
	if _, err := st.Read(make([]byte, 10)); !errors.Is(err, ErrReset) {
		t.Fatalf("read after RST_STREAM: %v, want ErrReset", err)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, ErrReset) {
		t.Fatalf("write after RST_STREAM: %v, want the same error", err)
	}
}

// A peer that grants no window and sends DATA meanwhile is cut once the
// DATA kept for Read passes maxStash.
func TestShutWindowAndAFlood(t *testing.T) {
	st := dial(t, rawServer(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}, func(fr *http2.Framer, bw *bufio.Writer) {
		chunk := make([]byte, 16<<10)
		for range maxStash/len(chunk) + 2 {
			_ = fr.WriteData(1, false, chunk)
		}
	}))
	if _, err := st.Write([]byte("a batch")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("write into a shut window while the peer floods: %v, want ErrProtocol", err)
	}
}

// A server end that answers before it read the whole request (a
// rejection) and lingers: the client still reads the answer, where a close
// with bytes unread would reset the connection under it.
func TestAnswerBeforeTheRequestEnded(t *testing.T) {
	addr, stop := acceptOne(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		st, err := acceptStream(c)
		if err != nil {
			return
		}
		if _, err := io.ReadFull(st, make([]byte, 4)); err != nil {
			return
		}
		_, _ = st.Write([]byte("too large"))
		if st.End() == nil {
			st.Linger(5 * time.Second)
		}
	})
	defer stop()
	st := dial(t, addr)
	if _, err := st.Write(make([]byte, 8<<20)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := st.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	got := make([]byte, len("too large"))
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "too large" {
		t.Fatalf("the answer: %q, %v", got, err)
	}
	st.Close() // ends the server's Linger
}
