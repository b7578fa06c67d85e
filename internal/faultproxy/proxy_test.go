package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 64)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip writes a line on c and reads the answer, within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return s, err
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestForwards(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c, r := dial(t, p.Addr())
	for _, line := range []string{"a", "bb", "ccc"} {
		got, err := roundTrip(c, r, line, 2*time.Second)
		if err != nil || got != line+"\n" {
			t.Fatalf("round trip %q: %q, %v", line, got, err)
		}
	}
}

func TestCutRefusesAndResetsThenHeals(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c, r := dial(t, p.Addr())
	if _, err := roundTrip(c, r, "x", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Set(Cut, 0); err != nil {
		t.Fatal(err)
	}
	// The open connection is reset.
	if _, err := roundTrip(c, r, "y", 2*time.Second); err == nil {
		t.Fatal("a connection survived the cut")
	}
	// New connections are refused.
	_, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial during cut: %v, want connection refused", err)
	}
	if err := p.Set(OK, 0); err != nil {
		t.Fatal(err)
	}
	c2, r2 := dial(t, p.Addr())
	if got, err := roundTrip(c2, r2, "z", 2*time.Second); err != nil || got != "z\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestBlackholeHoldsThenDelivers(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c, r := dial(t, p.Addr())
	if err := p.Set(Blackhole, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, r, "held", 200*time.Millisecond); err == nil {
		t.Fatal("a blackhole delivered")
	}
	// A new connection is accepted but delivers nothing either.
	c2, r2 := dial(t, p.Addr())
	if _, err := roundTrip(c2, r2, "held2", 200*time.Millisecond); err == nil {
		t.Fatal("a blackhole delivered on a new connection")
	}
	if err := p.Set(OK, 0); err != nil {
		t.Fatal(err)
	}
	_ = c2.SetDeadline(time.Now().Add(2 * time.Second))
	if got, err := r2.ReadString('\n'); err != nil || got != "held2\n" {
		t.Fatalf("held bytes after heal: %q, %v", got, err)
	}
}

func TestDelay(t *testing.T) {
	p := newProxy(t, echoServer(t))
	const d = 100 * time.Millisecond
	if err := p.Set(Delay, d); err != nil {
		t.Fatal(err)
	}
	if m, got := p.Mode(); m != Delay || got != d {
		t.Fatalf("Mode() = %v %v", m, got)
	}
	c, r := dial(t, p.Addr())
	start := time.Now()
	if got, err := roundTrip(c, r, "slow", 3*time.Second); err != nil || got != "slow\n" {
		t.Fatalf("delayed round trip: %q, %v", got, err)
	}
	// Both directions are delayed.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip took %v, want at least %v", took, 2*d)
	}
}

func TestTargetDownResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead)
	// The proxy may reset the connection before the dial even returns.
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	if _, err := roundTrip(c, bufio.NewReader(c), "x", 2*time.Second); err == nil {
		t.Fatal("a proxy to a dead target answered")
	}
}

func TestCloseAndModes(t *testing.T) {
	p, err := New("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	dial(t, p.Addr())
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Set(OK, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if err := p.Set(Mode(9), 0); err == nil {
		t.Fatal("unknown mode accepted")
	}
	for _, s := range []string{"ok", "cut", "blackhole", "delay"} {
		m, err := ParseMode(s)
		if err != nil || m.String() != s {
			t.Fatalf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("nope"); err == nil {
		t.Fatal("ParseMode accepted nope")
	}
}
