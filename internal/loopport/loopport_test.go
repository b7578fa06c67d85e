package loopport

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// TestReserveHoldsThePortUntilShared: while reserved, the port refuses
// connections and no listener gets it; once shared, a listener does.
func TestReserveHoldsThePortUntilShared(t *testing.T) {
	addr, f, err := Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a reserved port accepted a connection")
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatal("a listener got a reserved port")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listen on a reserved port: %v, want EADDRINUSE", err)
	}
	if err := Share(f); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on a shared port: %v", err)
	}
	ln.Close()
}
