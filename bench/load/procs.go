package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the driver started: a node, a peer app or
// redis-server. Every proc is stopped by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{}
	err  error
	// mu guards cpuAtKill and killed: a kill event runs beside the
	// readings of the load run.
	mu sync.Mutex
	// cpuAtKill is the last CPU reading before a kill.
	cpuAtKill time.Duration
	killed    bool
}

// tailBuffer keeps the last bytes written to it, and optionally copies
// everything to w.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	w   io.Writer
	pfx string
}

// Write keeps the tail of p and copies it, line-prefixed, to w if set.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 32<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-16<<10:]...)
	}
	if t.w != nil {
		for _, line := range bytes.SplitAfter(p, []byte("\n")) {
			if len(line) > 0 {
				fmt.Fprintf(t.w, "%s%s", t.pfx, line)
			}
		}
	}
	return len(p), nil
}

// String returns the tail kept.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// start runs cmd as a child that dies with the driver (Pdeathsig), with
// files passed as descriptors 3, 4, ...
func start(name string, cmd *exec.Cmd, files []*os.File, verbose bool) (*proc, error) {
	p := &proc{name: name, cmd: cmd, log: &tailBuffer{pfx: "[" + name + "] "}, done: make(chan struct{})}
	if verbose {
		p.log.w = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL, as a crash would, and waits for the process to end.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	cpu, _ := procCPU(p.pid())
	p.mu.Lock()
	p.cpuAtKill, p.killed = cpu, true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// cpu returns the process's CPU time (user and system) so far, or the
// reading taken just before it was killed.
func (p *proc) cpu() time.Duration {
	p.mu.Lock()
	atKill, killed := p.cpuAtKill, p.killed
	p.mu.Unlock()
	if killed || p.exited() {
		return atKill
	}
	d, err := procCPU(p.pid())
	if err != nil {
		return atKill
	}
	return d
}

// clkTck is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux platform Go supports.
const clkTck = 100

// procCPU reads utime+stime of pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: skip past its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// selfCPU is the driver's own CPU time (user and system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// listenFile returns a loopback listener on a free port and its file, to
// pass to a child; the driver's copy of the listener is closed.
func listenFile() (addr string, f *os.File, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	defer ln.Close()
	f, err = ln.(*net.TCPListener).File()
	return ln.Addr().String(), f, err
}

// freePort returns a loopback port that was free a moment ago (for
// redis-server, which cannot inherit a listener).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var healthClient = &http.Client{Timeout: 2 * time.Second}

// waitHTTP polls GET url until it answers 200, the process exits, or
// timeout passes.
func waitHTTP(p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := healthClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v\n%s", p.name, timeout, err, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisPing sends PING to the Redis server at addr and reports whether it
// answered PONG.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("+PONG"))
}

// startRedis starts redis-server on 127.0.0.1:port without persistence
// and waits until it answers.
func startRedis(port int, verbose bool) (*proc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (apt-get install -y redis-server): %w", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
		"--maxclients", "2000")
	p, err := start("redis", cmd, nil, verbose)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for !redisPing(addr) {
		if p.exited() {
			return nil, fmt.Errorf("redis-server exited: %v\n%s", p.err, p.log)
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("redis-server not ready\n%s", p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}
