package h2stream

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRoundTrip prices one round trip of a frame on a long-lived
// stream over loopback, both ends in this process: net/http's h2c client
// and server (a request body fed through an io.Pipe, a handler that
// flushes each reply), against this package's ends. cpu-µs/op is the
// process's CPU per round trip (both ends).
//
//	go test -run '^$' -bench RoundTrip -benchtime 20000x -count 5 ./buddy/internal/h2stream/
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{320, 1600} {
		frame := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		for _, v := range []struct {
			name string
			dial func(testing.TB, int) (func([]byte, []byte) error, func())
		}{{"nethttp", netHTTPEnds}, {"h2stream", ownEnds}} {
			b.Run(fmt.Sprintf("%s/%dB", v.name, size), func(b *testing.B) {
				rt, stop := v.dial(b, size)
				defer stop()
				reply := make([]byte, size)
				if err := rt(frame, reply); err != nil {
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
}

func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func netHTTPEnds(tb testing.TB, size int) (func([]byte, []byte) error, func()) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		if rc.Flush() != nil {
			return
		}
		buf := make([]byte, size)
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
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/stream", pr)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	rt := func(frame, reply []byte) error {
		if _, err := pw.Write(frame); err != nil {
			return err
		}
		_, err := io.ReadFull(resp.Body, reply)
		return err
	}
	return rt, func() {
		pw.Close()
		resp.Body.Close()
		tr.CloseIdleConnections()
		srv.Close()
	}
}

func ownEnds(tb testing.TB, size int) (func([]byte, []byte) error, func()) {
	addr, stopServer := acceptOne(tb, func(c net.Conn) {
		st, err := acceptStream(c)
		if err != nil {
			return
		}
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(st, buf); err != nil {
				return
			}
			if _, err := st.Write(buf); err != nil || st.Flush() != nil {
				return
			}
		}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := Dial(c, "http", addr, "/stream", "application/x-test")
	if err != nil {
		tb.Fatal(err)
	}
	rt := func(frame, reply []byte) error {
		if _, err := st.Write(frame); err != nil {
			return err
		}
		if err := st.Flush(); err != nil {
			return err
		}
		_, err := io.ReadFull(st, reply)
		return err
	}
	return rt, func() {
		st.Close()
		stopServer()
	}
}

// acceptStream peeks at c and accepts its stream with 200, whatever its
// request.
func acceptStream(c net.Conn) (*Stream, error) {
	p, err := Peek(c, 64<<10)
	if err != nil {
		return nil, err
	}
	return p.Accept(http.StatusOK, "application/x-test")
}

// acceptOne listens on loopback and serves the first connection with
// serve, which runs on a goroutine of its own; stop closes the listener
// and the connection and waits for serve.
func acceptOne(tb testing.TB, serve func(net.Conn)) (addr string, stop func()) {
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
		serve(c)
	})
	return ln.Addr().String(), func() {
		ln.Close()
		wg.Wait()
	}
}
