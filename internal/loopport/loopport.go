// Package loopport reserves loopback ports for the node processes that
// tests and the chaos driver start: a port that stays the reserver's until
// a node binds it, where a port merely found free once can be taken
// meanwhile by another test of the machine.
package loopport

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"syscall"
)

// Reserve binds a TCP socket to a free port of 127.0.0.1 without listening
// on it, and returns the address and the socket: the port is the socket's
// (no other bind gets it) while connections to it are still refused, as to
// a node that is not running. Close the socket to release the port.
//
// Bound without SO_REUSEADDR, the port is this socket's alone: Linux lets
// two sockets bind one port only when both set it, and a socket bound with
// it (another reservation, a test's listener) would make a later listen on
// this one fail. Share sets it for the node that takes the port. Ports are
// below the kernel's ephemeral range (32768 and up on Linux): after a
// kill, no outgoing connection of another process takes the port before
// the node's restart binds it again.
func Reserve() (string, *os.File, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("reserve a port: %w", err)
	}
	for range 1000 {
		port := 20000 + mrand.IntN(12000)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err == nil {
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			return addr, os.NewFile(uintptr(fd), "reserved "+addr), nil
		}
	}
	syscall.Close(fd)
	return "", nil, errors.New("reserve a port: none free in 20000-31999")
}

// Share sets SO_REUSEADDR on a reserved socket, so that a node process
// binding the port (net.Listen sets it too) gets it while the reservation
// is held, and binds it again after a restart while the last process's
// connections are in TIME_WAIT.
func Share(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("share a reserved port: %w", err)
	}
	var setErr error
	if err := rc.Control(func(fd uintptr) {
		setErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); err != nil {
		return fmt.Errorf("share a reserved port: %w", err)
	}
	if setErr != nil {
		return fmt.Errorf("share a reserved port: %w", setErr)
	}
	return nil
}
