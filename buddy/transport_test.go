package buddy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/core"
)

// post sends body to n's batch endpoint over h2c and returns the status.
func post(t *testing.T, addr string, body []byte) int {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://"+addr+pathBatch, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("answered over HTTP/%d", resp.ProtoMajor)
	}
	return resp.StatusCode
}

func sealedBatch(t *testing.T, from string, key []byte, to string, seq uint64, payload []byte) []byte {
	t.Helper()
	s, err := NewSealer(from, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	return s.Seal(nil, to, MsgBatch, seq, payload)
}

func TestHostileRequestsAreRejected(t *testing.T) {
	ms := cluster(t, 2, func(c *Config) { c.MaxBodySize = 64 << 10; c.MaxDecodedSize = 256 << 10 })
	b := ms[1]
	comp, _ := compress.New(compress.Config{})
	valid := comp.Encode(nil, AppendBatch(nil, []Record{{Kind: KindFull, Change: &core.Change{
		ID: "AAAAAAAAAAAAAAAAAAAAAAAA", Version: 1, Full: true, Set: []core.Attr{{Key: "k", Value: []byte("1")}}}}}))
	seq := uint64(time.Now().UnixNano())
	otherKey := bytes.Repeat([]byte("x"), 32)
	bomb := comp.Encode(nil, make([]byte, 1<<20)) // 1 MiB of zeros: a few hundred bytes on the wire
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	replayed := sealedBatch(t, "n1", testClusterKey, "n2", seq, valid)
	cases := []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"garbage", []byte("\x01hello, this is not an envelope"), 400, RejectMalformed},
		{"unknown version", []byte("\x09hello"), 400, RejectVersion},
		{"wrong key", sealedBatch(t, "n1", otherKey, "n2", seq+1, valid), 401, RejectAuth},
		{"wrong recipient", sealedBatch(t, "n1", testClusterKey, "n3", seq+2, valid), 401, RejectAuth},
		{"unknown node", sealedBatch(t, "evil", testClusterKey, "n2", seq+3, valid), 403, RejectUnknown},
		{"oversized", sealedBatch(t, "n1", testClusterKey, "n2", seq+4, make([]byte, 100<<10)), 413, RejectTooLarge},
		{"bomb", sealedBatch(t, "n1", testClusterKey, "n2", seq+5, bomb), 413, RejectBomb},
		{"not a batch", sealedBatch(t, "n1", testClusterKey, "n2", seq+6, comp.Encode(nil, []byte{1, 200, 200, 200})), 400, RejectMalformed},
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

func TestHTTP1IsRefused(t *testing.T) {
	ms := cluster(t, 2, nil)
	resp, err := http.Post("http://"+ms[1].node.Addr()+pathBatch, contentType, bytes.NewReader([]byte("x")))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("HTTP/1.1 request accepted")
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
	resp, err := c.Post("https://"+ms[1].node.Addr()+pathBatch, contentType, bytes.NewReader([]byte("x")))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("client without certificate got %d", resp.StatusCode)
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
