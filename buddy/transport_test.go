package buddy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/core"
)

// h2c returns an HTTP/2 client without TLS.
func h2c() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// streamFrame frames an envelope as the sender does: uvarint length, bytes.
func streamFrame(env []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(env))), env...)
}

// postStream opens a batch stream to addr, sends body as the whole request
// and returns the status of every reply frame until the stream ends.
func postStream(t *testing.T, addr string, body []byte) []int {
	t.Helper()
	c := h2c()
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://"+addr+pathStream, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream answered %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
	}
	statuses, err := readReplyFrames(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return statuses
}

// readReplyFrames returns the statuses of the reply frames in r. It fails
// on a malformed frame, a status that is neither 200 nor an error, and any
// byte after a rejection (which must end the stream).
func readReplyFrames(r io.Reader) ([]int, error) {
	br := bufio.NewReader(r)
	var statuses []int
	for {
		status, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return statuses, nil
		}
		if err != nil {
			return statuses, fmt.Errorf("reply frame status: %w", err)
		}
		size, err := binary.ReadUvarint(br)
		if err != nil || size > 1<<20 {
			return statuses, fmt.Errorf("reply frame length %d: %v", size, err)
		}
		if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
			return statuses, fmt.Errorf("reply frame body: %w", err)
		}
		statuses = append(statuses, int(status))
		if status == streamOK {
			continue
		}
		if status < 400 || status > 599 {
			return statuses, fmt.Errorf("reply status %d", status)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			return statuses, errors.New("frames after a rejection")
		}
		return statuses, nil
	}
}

// post sends one envelope on a stream of its own and returns the status of
// its reply frame.
func post(t *testing.T, addr string, env []byte) int {
	t.Helper()
	got := postStream(t, addr, streamFrame(env))
	if len(got) != 1 {
		t.Fatalf("%d reply frames for one request", len(got))
	}
	return got[0]
}

// sealedBatch seals payload as a batch from node from to node to, for the
// recipient's boot nonce boot.
func sealedBatch(t *testing.T, from string, key []byte, to string, boot, seq uint64, payload []byte) []byte {
	t.Helper()
	s, err := wire.NewSealer(from, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	return s.Seal(nil, to, wire.MsgBatch, seq, boot, payload)
}

func TestHostileRequestsAreRejected(t *testing.T) {
	ms := cluster(t, 2, func(c *Config) { c.MaxBodySize = 64 << 10; c.MaxDecodedSize = 256 << 10 })
	b := ms[1]
	boot := b.node.boot
	comp, _ := compress.New(compress.Config{})
	valid := comp.Encode(nil, wire.AppendBatch(nil, []wire.Record{{Kind: wire.KindFull, Change: &core.Change{
		ID: "AAAAAAAAAAAAAAAAAAAAAAAA", Version: 1, Full: true, Set: []core.Attr{{Key: "k", Value: []byte("1")}}}}}))
	seq := uint64(time.Now().UnixNano())
	otherKey := bytes.Repeat([]byte("x"), 32)
	bomb := comp.Encode(nil, make([]byte, 1<<20)) // 1 MiB of zeros: a few hundred bytes on the wire
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	replayed := sealedBatch(t, "n1", testClusterKey, "n2", boot, seq, valid)
	stale := sealedBatch(t, "n1", testClusterKey, "n2", boot^1, seq+7, valid) // sealed before n2 restarted
	cases := []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"garbage", append([]byte{wire.EnvelopeVersion}, "hello, this is not an envelope"...), 400, RejectMalformed},
		{"unknown version", []byte("\x09hello"), 400, RejectVersion},
		{"wrong key", sealedBatch(t, "n1", otherKey, "n2", boot, seq+1, valid), 401, RejectAuth},
		{"wrong recipient", sealedBatch(t, "n1", testClusterKey, "n3", boot, seq+2, valid), 401, RejectAuth},
		{"unknown node", sealedBatch(t, "evil", testClusterKey, "n2", boot, seq+3, valid), 403, RejectUnknown},
		{"oversized", sealedBatch(t, "n1", testClusterKey, "n2", boot, seq+4, make([]byte, 100<<10)), 413, RejectTooLarge},
		{"bomb", sealedBatch(t, "n1", testClusterKey, "n2", boot, seq+5, bomb), 413, RejectBomb},
		{"not a batch", sealedBatch(t, "n1", testClusterKey, "n2", boot, seq+6, comp.Encode(nil, []byte{wire.WireVersion, 200, 200, 200})), 400, RejectMalformed},
		{"another boot of the recipient", stale, 401, RejectAuth},
		{"first send", replayed, 200, ""},
		{"replay", replayed, 409, RejectReplay},
	}
	for _, c := range cases {
		before := b.node.Stats()
		if got := post(t, b.node.Addr(), c.body); got != c.status {
			t.Fatalf("%s: status %d, want %d", c.name, got, c.status)
		}
		after := b.node.Stats()
		if c.reason == "" {
			continue
		}
		if after.Rejected[c.reason] != before.Rejected[c.reason]+1 {
			t.Fatalf("%s: counter %q %d -> %d", c.name, c.reason, before.Rejected[c.reason], after.Rejected[c.reason])
		}
		if after.Backups != before.Backups || after.RecordsApplied != before.RecordsApplied {
			t.Fatalf("%s: changed the backups", c.name)
		}
	}
}

// The stream is framed, bounded and authenticated frame by frame: a bad
// frame ends it with its rejection, and what follows is not read.
func TestHostileStreamsAreRejected(t *testing.T) {
	ms := cluster(t, 2, func(c *Config) { c.MaxBodySize = 64 << 10 })
	b := ms[1]
	boot := b.node.boot
	comp, _ := compress.New(compress.Config{})
	batch := func(id string) []byte {
		return comp.Encode(nil, wire.AppendBatch(nil, []wire.Record{{Kind: wire.KindFull, Change: &core.Change{
			ID: id, Version: 1, Full: true, Set: []core.Attr{{Key: "k", Value: []byte("1")}}}}}))
	}
	seq := uint64(time.Now().UnixNano())
	good := func(id string) []byte {
		seq++
		return streamFrame(sealedBatch(t, "n1", testClusterKey, "n2", boot, seq, batch(id)))
	}
	forged := streamFrame(sealedBatch(t, "n1", bytes.Repeat([]byte("x"), 32), "n2", boot, seq+100, batch("FORGEDFORGEDFORGEDFORGED")))
	cases := []struct {
		name     string
		body     []byte
		statuses []int
		reason   string
		applied  uint64
	}{
		{"two batches", concat(good("AAAAAAAAAAAAAAAAAAAAAAA1"), good("AAAAAAAAAAAAAAAAAAAAAAA2")), []int{200, 200}, "", 2},
		{"length beyond MaxBodySize", binary.AppendUvarint(nil, 1<<30), []int{413}, RejectTooLarge, 0},
		{"bad length", bytes.Repeat([]byte{0xff}, 11), []int{400}, RejectMalformed, 0},
		{"truncated frame", append(binary.AppendUvarint(nil, 500), "short"...), []int{400}, RejectMalformed, 0},
		{"forged frame ends the stream", concat(good("AAAAAAAAAAAAAAAAAAAAAAA3"), forged, good("AAAAAAAAAAAAAAAAAAAAAAA4")), []int{200, 401}, RejectAuth, 1},
		{"a frame of another type", streamFrame(func() []byte {
			s, _ := wire.NewSealer("n1", [][]byte{testClusterKey})
			return s.Seal(nil, "n2", wire.MsgPing, seq+200, boot, nil)
		}()), []int{400}, RejectMalformed, 0},
		{"empty stream", nil, nil, "", 0},
	}
	for _, c := range cases {
		before := b.node.Stats()
		got := postStream(t, b.node.Addr(), c.body)
		if fmt.Sprint(got) != fmt.Sprint(c.statuses) {
			t.Fatalf("%s: reply statuses %v, want %v", c.name, got, c.statuses)
		}
		after := b.node.Stats()
		if c.reason != "" && after.Rejected[c.reason] != before.Rejected[c.reason]+1 {
			t.Fatalf("%s: counter %q %d -> %d", c.name, c.reason, before.Rejected[c.reason], after.Rejected[c.reason])
		}
		if d := after.RecordsApplied - before.RecordsApplied; d != c.applied {
			t.Fatalf("%s: %d records applied, want %d", c.name, d, c.applied)
		}
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// A peer that has no batch stream (an older node, something else on the
// port) refuses to open one: the sender gets an error naming the status.
func TestOpenStreamRefused(t *testing.T) {
	ms := cluster(t, 1, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st, err := ms[0].node.openStream(ctx, cancel, Peer{ID: "old", Addr: ln.Addr().String()})
	if err == nil {
		st.close()
		t.Fatal("stream opened on a peer without the endpoint")
	}
	if !strings.Contains(err.Error(), "404") {
		t.Fatalf("error %v does not name the status", err)
	}
}

// The replication port speaks HTTP/2 only: an HTTP/1.1 request gets no
// answer, its connection is closed (PROTOCOL.md, section 1).
func TestHTTP1IsRefused(t *testing.T) {
	ms := cluster(t, 2, nil)
	for _, path := range []string{pathStream, pathFetch} {
		resp, err := http.Post("http://"+ms[1].node.Addr()+path, contentType, bytes.NewReader([]byte("x")))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("HTTP/1.1 request to %s answered %d", path, resp.StatusCode)
		}
	}
}

// testTLS returns a server/client TLS config for 127.0.0.1 signed by a fresh
// CA, requiring client certificates.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientCAs:    pool, RootCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	}
}

func TestMutualTLS(t *testing.T) {
	cfg := testTLS(t)
	ms := cluster(t, 2, func(c *Config) { c.TLS = cfg })
	u := &browser{t: t}
	u.do(ms[0], "/set?k=v")
	sameCopy(t, ms[0], ms[1], u.id)
	// A client without a certificate does not get in.
	var p http.Protocols
	p.SetHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("https://"+ms[1].node.Addr()+pathStream, contentType, bytes.NewReader([]byte("x")))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("client without certificate got %d", resp.StatusCode)
	}
}

// A buddy's batches come on a connection of their own, served by the
// router's own HTTP/2 end, not by net/http's server (which would serve
// them too, at three times the CPU): with and without TLS.
func TestBatchStreamHasItsOwnConnection(t *testing.T) {
	for name, cfg := range map[string]*tls.Config{"h2c": nil, "tls": testTLS(t)} {
		t.Run(name, func(t *testing.T) {
			ms := cluster(t, 2, func(c *Config) { c.TLS = cfg })
			u := &browser{t: t}
			u.do(ms[0], "/set?k=v")
			sameCopy(t, ms[0], ms[1], u.id)
			r := ms[1].node.router
			r.mu.Lock()
			streams := r.streams
			r.mu.Unlock()
			if streams != 1 {
				t.Fatalf("n2's router serves %d batch streams itself, want the one of n1", streams)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	ok := Config{ID: "n1", Listener: ln, ClusterKeys: [][]byte{testClusterKey}}
	for name, edit := range map[string]func(*Config){
		"no id":        func(c *Config) { c.ID = "" },
		"no listener":  func(c *Config) { c.Listener = nil },
		"no key":       func(c *Config) { c.ClusterKeys = nil },
		"short key":    func(c *Config) { c.ClusterKeys = [][]byte{[]byte("short")} },
		"bad peer":     func(c *Config) { c.Peers = []Peer{{ID: "n2", Addr: "nope"}} },
		"dup peer":     func(c *Config) { c.Peers = []Peer{{ID: "n2", Addr: "127.0.0.1:1"}, {ID: "n2", Addr: "127.0.0.1:2"}} },
		"bad mode":     func(c *Config) { c.Mode = 7 },
		"neg timeout":  func(c *Config) { c.ReplicationTimeout = -1 },
		"bad codec":    func(c *Config) { c.Compression.Codec = "lzma" },
		"batch > wire": func(c *Config) { c.MaxBatchRecords = 1 << 20 },
	} {
		cfg := ok
		edit(&cfg)
		if n, err := New(cfg); err == nil {
			n.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBackupsExpireAndTouchesKeepThemAlive(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	ms := cluster(t, 2, func(c *Config) { c.Now = clk.Now; c.TouchInterval = time.Minute })
	a, b := ms[0], ms[1]
	u := &browser{t: t}
	u.do(a, "/set?k=v")
	idle, _ := a.mgr.Timeouts()
	// A touch is throttled: the write just told the buddy of this access.
	u.do(a, "/")
	if err := a.node.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := b.node.ExpireBackups(); n != 0 {
		t.Fatalf("expired %d fresh backups", n)
	}
	clk.Add(idle + 2*time.Minute)
	if n := b.node.ExpireBackups(); n != 1 {
		t.Fatalf("expired %d, want the idle copy", n)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// The endpoints other than the batch stream carry small messages: a body
// beyond maxCallBody is refused before it is read whole (413, counted), so
// one request cannot make the node hold MaxBodySize of unauthenticated
// bytes.
func TestCallBodiesAreBounded(t *testing.T) {
	ms := cluster(t, 2, nil)
	b := ms[1]
	for _, path := range []string{pathPing, pathFetch, pathTransfer, pathLeave} {
		before := b.node.Stats().Rejected[RejectTooLarge]
		body := append([]byte{wire.EnvelopeVersion}, make([]byte, maxCallBody+1)...)
		if code, _ := rawPost(t, b.node.Addr(), path, body); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s with a %d-byte body: %d, want 413", path, len(body), code)
		}
		if got := b.node.Stats().Rejected[RejectTooLarge]; got != before+1 {
			t.Fatalf("%s: Rejected[too_large] %d -> %d", path, before, got)
		}
	}
	// A body within the bound goes on to authentication.
	if code, _ := rawPost(t, b.node.Addr(), pathPing, append([]byte{wire.EnvelopeVersion}, make([]byte, maxCallBody-1)...)); code == http.StatusRequestEntityTooLarge {
		t.Fatal("a body within the bound refused as too large")
	}
}
