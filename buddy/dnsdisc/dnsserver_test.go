package dnsdisc

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a minimal authoritative DNS server on loopback, over UDP and
// TCP, answering SRV, A and AAAA questions from a table the test edits
// while it runs. A name not in the table is NXDOMAIN. An answer larger
// than the query's UDP size (512 bytes, or its EDNS(0) size) goes out
// truncated over UDP, so the resolver asks again over TCP, as a real
// server makes it do.
type dnsServer struct {
	udp net.PacketConn
	tcp net.Listener

	mu    sync.Mutex
	names map[string]*dnsEntry // by lower-case name with its final dot
	conns map[net.Conn]struct{}

	queries atomic.Int64 // questions received, over both transports
	tcpUsed atomic.Int64 // of which over TCP
	wg      sync.WaitGroup
}

// dnsEntry is what the server answers for one name.
type dnsEntry struct {
	rcode dnsmessage.RCode // when not success, the answer has no records
	srv   []dnsmessage.SRVResource
	ips   []netip.Addr
	// raw, when set, replaces the answer: it returns the bytes to send
	// for the query (nil: send nothing, a server that never answers).
	raw func(query []byte) []byte
}

// startDNS starts a server on 127.0.0.1; it stops when the test ends.
func startDNS(t testing.TB) *dnsServer {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		udp.Close()
		t.Fatal(err)
	}
	s := &dnsServer{udp: udp, tcp: tcp, names: map[string]*dnsEntry{}, conns: map[net.Conn]struct{}{}}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.serveUDP() }()
	go func() { defer s.wg.Done(); s.serveTCP() }()
	t.Cleanup(s.close)
	return s
}

func (s *dnsServer) close() {
	s.udp.Close()
	s.tcp.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// resolver returns a pure-Go resolver that sends every query to s. Its
// connections close when their query's context ends: the resolver's own
// deadline for a query is resolv.conf's timeout (5 s by default), and a
// query its caller gave up on would otherwise wait that long in the
// background (and outlive the test).
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		addr := s.udp.LocalAddr().String()
		if strings.HasPrefix(network, "tcp") {
			network, addr = "tcp", s.tcp.Addr().String()
		} else {
			network = "udp"
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { c.Close() })
		return c, nil
	}}
}

func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// set replaces the entry of name.
func (s *dnsServer) set(name string, e dnsEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[canonical(name)] = &e
}

// remove deletes name: it becomes NXDOMAIN.
func (s *dnsServer) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, canonical(name))
}

// setSRV makes name answer the SRV records given as target:port.
func (s *dnsServer) setSRV(t testing.TB, name string, targets ...string) {
	t.Helper()
	var e dnsEntry
	for _, tp := range targets {
		host, port, err := net.SplitHostPort(tp)
		if err != nil {
			t.Fatal(err)
		}
		p, err := netip.ParseAddrPort("0.0.0.0:" + port)
		if err != nil {
			t.Fatal(err)
		}
		e.srv = append(e.srv, dnsmessage.SRVResource{Port: p.Port(), Weight: 10, Target: dnsmessage.MustNewName(canonical(host))})
	}
	s.set(name, e)
}

// setIPs makes name answer A and AAAA records.
func (s *dnsServer) setIPs(name string, ips ...string) {
	var e dnsEntry
	for _, ip := range ips {
		e.ips = append(e.ips, netip.MustParseAddr(ip))
	}
	s.set(name, e)
}

func (s *dnsServer) serveUDP() {
	buf := make([]byte, 65536)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := s.answer(buf[:n], false); out != nil {
			_, _ = s.udp.WriteTo(out, from)
		}
	}
}

func (s *dnsServer) serveTCP() {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			for {
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				s.tcpUsed.Add(1)
				out := s.answer(q, true)
				if out == nil {
					continue
				}
				if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(out)))); err != nil {
					return
				}
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}()
	}
}

// answer returns the reply to query q, or nil to send none.
func (s *dnsServer) answer(q []byte, overTCP bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	s.queries.Add(1)
	udpSize := 512
	if err := p.SkipAllQuestions(); err == nil {
		_ = p.SkipAllAnswers()
		_ = p.SkipAllAuthorities()
		for {
			ah, err := p.AdditionalHeader()
			if err != nil {
				break
			}
			if ah.Type == dnsmessage.TypeOPT {
				udpSize = max(udpSize, int(ah.Class))
			}
			_ = p.SkipAdditional()
		}
	}

	s.mu.Lock()
	e, ok := s.names[canonical(question.Name.String())]
	var entry dnsEntry
	if ok {
		entry = *e
	}
	s.mu.Unlock()
	if entry.raw != nil {
		return entry.raw(q)
	}

	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	switch {
	case !ok:
		rh.RCode = dnsmessage.RCodeNameError
	case entry.rcode != dnsmessage.RCodeSuccess:
		rh.RCode = entry.rcode
	}
	build := func(records bool) []byte {
		b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(question)
		_ = b.StartAnswers()
		if records && rh.RCode == dnsmessage.RCodeSuccess {
			hdr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}
			switch question.Type {
			case dnsmessage.TypeSRV:
				for _, r := range entry.srv {
					if err := b.SRVResource(hdr, r); err != nil {
						panic(err)
					}
				}
			case dnsmessage.TypeA:
				for _, ip := range entry.ips {
					if ip.Is4() {
						_ = b.AResource(hdr, dnsmessage.AResource{A: ip.As4()})
					}
				}
			case dnsmessage.TypeAAAA:
				for _, ip := range entry.ips {
					if ip.Is6() {
						_ = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: ip.As16()})
					}
				}
			}
		}
		out, err := b.Finish()
		if err != nil {
			panic(err)
		}
		return out
	}
	out := build(true)
	if !overTCP && len(out) > udpSize {
		rh.Truncated = true
		out = build(false)
	}
	return out
}

// silent is a raw answer that never comes.
func silent([]byte) []byte { return nil }

// garbage is a raw answer with the query's ID and nonsense after it.
func garbage(q []byte) []byte {
	if len(q) < 2 {
		return nil
	}
	return append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 5}, []byte("not a dns message at all")...)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
