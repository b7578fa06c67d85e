package dnsdisc

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tandemsession/tandem/buddy"
)

// convert turns records into peers sorted by ID; skipped says why each
// record left out was. It fails only when no record is usable.
func (d *Discovery) convert(recs []Record) (peers []buddy.Peer, skipped []string, err error) {
	peers = make([]buddy.Peer, 0, len(recs))
	for _, r := range recs {
		p, why := d.peer(r)
		if why != "" {
			skipped = append(skipped, why)
			continue
		}
		peers = append(peers, p)
	}
	// One peer per ID, the same one on every node whatever the order of
	// the answer (resolvers shuffle SRV records by weight).
	slices.SortFunc(peers, func(a, b buddy.Peer) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Addr, b.Addr), strings.Compare(a.Zone, b.Zone))
	})
	out := peers[:0]
	for _, p := range peers {
		if n := len(out); n > 0 && out[n-1].ID == p.ID {
			if out[n-1] != p {
				skipped = append(skipped, fmt.Sprintf("ID %q at %s: already at %s", p.ID, p.Addr, out[n-1].Addr))
			}
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		if len(recs) == 0 {
			return nil, skipped, fmt.Errorf("%w: %s: empty answer", ErrNoRecords, d)
		}
		return nil, skipped, fmt.Errorf("%w: %s: none of %d records is usable (%s)", ErrNoRecords, d, len(recs), skipped[0])
	}
	return out, skipped, nil
}

// peer converts one record; why says why it cannot be a peer.
func (d *Discovery) peer(r Record) (p buddy.Peer, why string) {
	if r.Port == 0 {
		return p, fmt.Sprintf("%s: port 0", recordName(r))
	}
	var addr string
	if r.IP.IsValid() || r.Host == "" {
		ip := r.IP.Unmap()
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" {
			return p, fmt.Sprintf("address %q: not a unicast address", ip)
		}
		r.IP, r.Host = ip, ""
		addr = netip.AddrPortFrom(ip, r.Port).String()
	} else {
		host := strings.ToLower(strings.TrimSuffix(r.Host, "."))
		if host == "" {
			// RFC 2782: the target "." says the service is not here.
			return p, `target ".": no service`
		}
		if !validHost(host) {
			return p, fmt.Sprintf("target %q: not a host name", truncate(r.Host))
		}
		r.Host = host
		addr = net.JoinHostPort(host, strconv.Itoa(int(r.Port)))
	}
	id := d.cfg.ID(r)
	if !validID(id) {
		return p, fmt.Sprintf("%s: ID %q is not 1 to %d printable bytes", recordName(r), truncate(id), MaxIDLen)
	}
	zone := ""
	if d.cfg.Zone != nil {
		if zone = d.cfg.Zone(r); zone != "" && !validID(zone) {
			return p, fmt.Sprintf("%s: zone %q is not 1 to %d printable bytes", recordName(r), truncate(zone), MaxIDLen)
		}
	}
	return buddy.Peer{ID: id, Addr: addr, Zone: zone}, ""
}

func recordName(r Record) string {
	if r.Host != "" {
		return fmt.Sprintf("target %q", truncate(r.Host))
	}
	return fmt.Sprintf("address %s", r.IP)
}

// truncate shortens s for a log line.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// validID reports whether s is 1 to MaxIDLen bytes of printable ASCII
// without spaces: safe in a log line, a cookie and a URL.
func validID(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// validHost reports whether s (lower case, no final dot) is a host name:
// at most 253 bytes of dot-separated labels of 1 to 63 letters, digits,
// hyphens and underscores, not starting or ending with a hyphen.
func validHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validName reports whether s is a domain name to look up, with or
// without its final dot.
func validName(s string) bool { return validHost(strings.TrimSuffix(s, ".")) }
