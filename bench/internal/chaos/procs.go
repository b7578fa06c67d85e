package chaos

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tandemsession/tandem/internal/loopport"
)

// nodeProc is one node: its fixed addresses and its current process. A
// restarted node listens on the same addresses: the driver binds them
// again and hands the sockets to the new process as descriptors 3 and 4,
// and closes its own copies at once, so that while no process runs a
// connection to the node is refused.
type nodeProc struct {
	id                 string
	httpAddr, replAddr string     // "" until reserve picks ports
	held               []*os.File // the reserved sockets, kept until the first start uses them
	gossipAddr         string     // a membership's gossip port, TCP and UDP; "" for static
	gossipHeld         []*os.File // its reservation, closed just before the first start
	env                []string
	log                io.Writer // the node's output, every incarnation

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process exited
	starts  int
	paused  bool
	exitErr error
}

// running reports whether a process of the node is alive (paused counts).
func (p *nodeProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *nodeProc) runningLocked() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// incarnation is the number of starts before the current process.
func (p *nodeProc) incarnation() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.starts-1, 0)
}

func (p *nodeProc) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// bind listens on addr (a fixed address, or 127.0.0.1:0 the first time)
// and returns the address and the socket as a file. Binding the address a
// killed process held can fail for a moment: it is retried for a while.
func bind(addr string) (string, *os.File, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			f, ferr := ln.(*net.TCPListener).File()
			got := ln.Addr().String()
			ln.Close()
			if ferr != nil {
				return "", nil, fmt.Errorf("listener file: %w", ferr)
			}
			return got, f, nil
		}
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reserve picks the node's two ports (once), before any process starts,
// so that every node's peer list can name them. It keeps the sockets open
// for the first start: closed, a port could go to another process of the
// machine (a test binding 127.0.0.1:0) before the node binds it. With
// gossip, it reserves a third port, TCP and UDP, for the membership's
// gossip.
func (p *nodeProc) reserve(gossip bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.httpAddr != "" {
		return nil
	}
	for _, a := range []*string{&p.httpAddr, &p.replAddr} {
		got, f, err := loopport.Reserve()
		if err != nil {
			return err
		}
		p.held = append(p.held, f)
		*a = got
	}
	if gossip {
		got, fs, err := reserveGossipPort()
		if err != nil {
			return err
		}
		p.gossipAddr, p.gossipHeld = got, fs
	}
	return nil
}

// reserveGossipPort reserves a port as loopport.Reserve does, for TCP and UDP
// both (memberlist binds the one port for each): a UDP socket bound to
// the TCP socket's port, without SO_REUSEADDR. The node binds the port
// itself, so the driver closes both just before the node's first start.
func reserveGossipPort() (string, []*os.File, error) {
	for range 100 {
		addr, tcp, err := loopport.Reserve()
		if err != nil {
			return "", nil, err
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			tcp.Close()
			return "", nil, fmt.Errorf("reserve a gossip port: %w", err)
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			tcp.Close()
			return "", nil, fmt.Errorf("reserve a gossip port: %w", err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: [4]byte{127, 0, 0, 1}}); err == nil {
			return addr, []*os.File{tcp, os.NewFile(uintptr(fd), "reserved-udp")}, nil
		}
		syscall.Close(fd)
		tcp.Close()
	}
	return "", nil, errors.New("reserve a gossip port: no port free for both TCP and UDP")
}

// release closes the sockets reserved for a node that never started.
func (p *nodeProc) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range slices.Concat(p.held, p.gossipHeld) {
		f.Close()
	}
	p.held, p.gossipHeld = nil, nil
}

// start runs a new process of the node, the driver re-executed in child
// mode, with Pdeathsig so that it dies with the driver.
func (p *nodeProc) start(exe string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return fmt.Errorf("%s is already running", p.id)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	files, p.held = p.held, nil
	for _, f := range files {
		// As net.Listen does: a restart binds the port again while the
		// last process's connections are in TIME_WAIT.
		if err := loopport.Share(f); err != nil {
			return fmt.Errorf("%s: %w", p.id, err)
		}
		if err := syscall.Listen(int(f.Fd()), syscall.SOMAXCONN); err != nil {
			return fmt.Errorf("%s: listen on a reserved port: %w", p.id, err)
		}
	}
	for _, a := range []string{p.httpAddr, p.replAddr}[len(files):] {
		_, f, err := bind(a)
		if err != nil {
			return fmt.Errorf("%s: %w", p.id, err)
		}
		files = append(files, f)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The gossip port's reservation goes now: the node binds it.
	for _, f := range p.gossipHeld {
		f.Close()
	}
	p.gossipHeld = nil
	fmt.Fprintf(p.log, "=== %s start %d at %s\n", p.id, p.starts+1, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.id, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.paused = cmd, done, false
	p.starts++
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// signal sends sig to the current process by its PID.
func (p *nodeProc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return fmt.Errorf("%s is not running", p.id)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.id, p.cmd.Process.Pid, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
	return nil
}

// wait waits up to d for the current process to exit.
func (p *nodeProc) wait(d time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s did not exit within %v", p.id, d)
	}
}

// kill stops the current process at once (SIGCONT first if paused, so
// that it can die) and waits for it.
func (p *nodeProc) kill() error {
	if !p.running() {
		return nil
	}
	if p.isPaused() {
		_ = p.signal(syscall.SIGCONT)
	}
	if err := p.signal(syscall.SIGKILL); err != nil && p.running() {
		return err
	}
	return p.wait(10 * time.Second)
}

// exitError returns how the last process ended.
func (p *nodeProc) exitError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitErr != nil {
		var ee *exec.ExitError
		if errors.As(p.exitErr, &ee) && !ee.Exited() {
			return nil // killed by a signal: what the driver asked for
		}
	}
	return p.exitErr
}
