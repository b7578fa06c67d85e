package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// BenchmarkStreamRoundTrip prices one round trip of a batch-sized frame
// (320 bytes each way) on one long-lived HTTP/2 stream over loopback, both
// ends in this process, two ways:
//
//   - nethttp: as buddy's batch stream does it today, net/http's h2c client
//     (a request body fed through an io.Pipe) and server (a handler that
//     reads the body and flushes each reply);
//   - framer: HTTP/2 frames written with golang.org/x/net/http2's Framer by
//     the goroutine that has them, and read by one goroutine per end.
//
// cpu-µs/op is the process's CPU (both ends) per round trip. It measures
// what replacing net/http's stream machinery could save a batch (see
// bench/README.md, "Where Sync's extra CPU goes"); the framer end here is
// a measuring device (no flow control, no errors handled), not a transport.
//
//	go test -run '^$' -bench StreamRoundTrip -benchtime 20000x -count 5 ./bench/
func BenchmarkStreamRoundTrip(b *testing.B) {
	frame := bytes.Repeat([]byte("0123456789abcdef"), 20)
	for _, v := range []struct {
		name string
		dial func(testing.TB) (roundTrip func([]byte, []byte) error, stop func())
	}{
		{"nethttp", netHTTPStream},
		{"framer", framerStream},
	} {
		b.Run(v.name, func(b *testing.B) {
			rt, stop := v.dial(b)
			defer stop()
			reply := make([]byte, len(frame))
			if err := rt(frame, reply); err != nil { // the stream is open and warm
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := processCPU(b)
			b.ResetTimer()
			for range b.N {
				if err := rt(frame, reply); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			if !bytes.Equal(reply, frame) {
				b.Fatal("the reply is not the frame")
			}
		})
	}
}

// netHTTPStream opens a full-duplex h2c stream with net/http's client and
// server, whose handler echoes every frame and flushes it.
func netHTTPStream(tb testing.TB) (func([]byte, []byte) error, func()) {
	tb.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		if rc.Flush() != nil {
			return
		}
		buf := make([]byte, 320)
		for {
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				return
			}
			if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
				return
			}
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	tr := &http.Transport{Protocols: &p}
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/stream", pr)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	rt := func(frame, reply []byte) error {
		if _, err := pw.Write(frame); err != nil {
			return err
		}
		_, err := io.ReadFull(br, reply)
		return err
	}
	return rt, func() {
		pw.Close()
		resp.Body.Close()
		tr.CloseIdleConnections()
		srv.Close()
	}
}

// framerStream opens one stream on a connection whose ends write frames
// with http2.Framer themselves: the client writes a DATA frame and reads
// the reply on its own goroutine; the server's one goroutine reads each
// frame and writes the reply at once.
func framerStream(tb testing.TB) (func([]byte, []byte) error, func()) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil {
			return
		}
		bw := bufio.NewWriter(c)
		fr := http2.NewFramer(bw, bufio.NewReader(c))
		if openWindows(fr, bw) != nil {
			return
		}
		var hdr bytes.Buffer
		enc := hpack.NewEncoder(&hdr)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					err = fr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				hdr.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hdr.Bytes(), EndHeaders: true})
			case *http2.DataFrame:
				err = fr.WriteData(f.StreamID, false, f.Data())
			}
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	stop := func() {
		c.Close()
		ln.Close()
		wg.Wait()
	}
	bw := bufio.NewWriter(c)
	fr := http2.NewFramer(bw, bufio.NewReader(c))
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", ln.Addr().String()}, {":path", "/stream"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		tb.Fatal(err)
	}
	if err := openWindows(fr, bw); err != nil {
		tb.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for { // until the server's response headers
		f, err := fr.ReadFrame()
		if err != nil {
			stop()
			tb.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = fr.WriteSettingsAck()
			_ = bw.Flush()
		}
		if _, ok := f.(*http2.HeadersFrame); ok {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	rt := func(frame, reply []byte) error {
		if err := fr.WriteData(1, false, frame); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			if d, ok := f.(*http2.DataFrame); ok {
				if copy(reply, d.Data()) != len(reply) {
					return errors.New("short reply")
				}
				return nil
			}
		}
	}
	return rt, stop
}

// openWindows sends this end's SETTINGS and opens the connection's flow
// control window wide: the benchmark sends no WINDOW_UPDATE after.
func openWindows(fr *http2.Framer, bw *bufio.Writer) error {
	const wide = 1<<31 - 1
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: wide}); err != nil {
		return err
	}
	if err := fr.WriteWindowUpdate(0, wide-65535); err != nil {
		return err
	}
	return bw.Flush()
}
