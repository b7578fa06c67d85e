package dnsdisc

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestConvertRecords(t *testing.T) {
	d := &Discovery{cfg: Config{SRV: srvName, ID: DefaultID}}
	for _, tc := range []struct {
		name string
		rec  Record
		want string // ID=Addr, or "" when left out
	}{
		{"srv", Record{Host: "n1.test.", Port: 7946}, "n1=n1.test:7946"},
		{"srv upper case", Record{Host: "N1.Test", Port: 7946}, "n1=n1.test:7946"},
		{"srv port 0", Record{Host: "n1.test", Port: 0}, ""},
		{"srv root target", Record{Host: ".", Port: 7946}, ""},
		{"srv empty label", Record{Host: "n1..test", Port: 7946}, ""},
		{"srv label of 64", Record{Host: strings.Repeat("a", 64) + ".test", Port: 1}, ""},
		{"srv underscore", Record{Host: "n_1.test", Port: 1}, "n_1=n_1.test:1"},
		{"srv trailing hyphen", Record{Host: "n1-.test", Port: 1}, ""},
		{"srv colon", Record{Host: "n1:80.test", Port: 1}, ""},
		{"ipv4", Record{IP: mustAddr("10.0.0.1"), Port: 7946}, "10.0.0.1=10.0.0.1:7946"},
		{"ipv4 in ipv6", Record{IP: mustAddr("::ffff:10.0.0.1"), Port: 7946}, "10.0.0.1=10.0.0.1:7946"},
		{"ipv6", Record{IP: mustAddr("fd00::1"), Port: 7946}, "fd00::1=[fd00::1]:7946"},
		{"ipv6 zone", Record{IP: mustAddr("fe80::1%eth0"), Port: 7946}, ""},
		{"unspecified", Record{IP: mustAddr("0.0.0.0"), Port: 7946}, ""},
		{"multicast", Record{IP: mustAddr("ff02::1"), Port: 7946}, ""},
		{"no address", Record{Port: 7946}, ""},
	} {
		p, why := d.peer(tc.rec)
		got := ""
		if why == "" {
			got = p.ID + "=" + p.Addr
		}
		if got != tc.want {
			t.Errorf("%s: %q (%s), want %q", tc.name, got, why, tc.want)
		}
	}
}

// decodeRecords reads the fuzzer's records: a kind byte (bit 0: an
// address record), a port (2 bytes), a length byte and that many bytes of
// host name, or of address (4 or 16 bytes make an address).
func decodeRecords(data []byte) []Record {
	var recs []Record
	for len(data) >= 4 {
		kind, port, n := data[0], binary.BigEndian.Uint16(data[1:3]), int(data[3])
		data = data[4:]
		n = min(n, len(data))
		body := data[:n]
		data = data[n:]
		r := Record{Port: port}
		if kind&1 == 1 {
			r.IP, _ = netip.AddrFromSlice(body)
		} else {
			r.Host = string(body)
		}
		recs = append(recs, r)
	}
	return recs
}

// FuzzConvert checks the record-to-peer conversion on arbitrary records:
// it never panics; it fails only with ErrNoRecords; what it returns is
// sorted by ID, one peer per ID, each ID and zone 1 to 64 printable bytes
// and each Addr a host name or an address with a port above 0; and the
// order of the records does not change the result.
func FuzzConvert(f *testing.F) {
	f.Add([]byte{0, 0x1f, 0x0a, 7, 'n', '1', '.', 't', 'e', 's', 't'}, false)
	f.Add([]byte{1, 0x1f, 0x0a, 4, 10, 0, 0, 1, 1, 0x1f, 0x0a, 4, 10, 0, 0, 1}, false)
	f.Add([]byte{0, 0, 1, 12, 't', 'a', 'n', 'd', 'e', 'm', '-', 'a', '-', '0', '.', 'x'}, true)
	f.Fuzz(func(t *testing.T, data []byte, zones bool) {
		recs := decodeRecords(data)
		d := &Discovery{cfg: Config{SRV: srvName, ID: DefaultID}}
		if zones {
			d.cfg.Zone = StatefulSetZone
		}
		peers, _, err := d.convert(recs)
		if err != nil {
			if !errors.Is(err, ErrNoRecords) || peers != nil {
				t.Fatalf("%v, %v", peers, err)
			}
			return
		}
		if len(peers) == 0 || len(peers) > len(recs) {
			t.Fatalf("%d peers from %d records", len(peers), len(recs))
		}
		for i, p := range peers {
			if i > 0 && peers[i-1].ID >= p.ID {
				t.Fatalf("not sorted, or a duplicate: %q, %q", peers[i-1].ID, p.ID)
			}
			if !validID(p.ID) || p.Zone != "" && !validID(p.Zone) {
				t.Fatalf("bad ID or zone %+v", p)
			}
			host, port, err := net.SplitHostPort(p.Addr)
			if err != nil {
				t.Fatalf("Addr %q: %v", p.Addr, err)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				t.Fatalf("Addr %q: port", p.Addr)
			}
			if _, err := netip.ParseAddr(host); err != nil && !validHost(host) {
				t.Fatalf("Addr %q: host", p.Addr)
			}
		}
		reversed := slices.Clone(recs)
		slices.Reverse(reversed)
		again, _, err := d.convert(reversed)
		if err != nil || !slices.Equal(peers, again) {
			t.Fatalf("reversed records: %v, %v; first %v", again, err, peers)
		}
	})
}
