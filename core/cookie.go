package core

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
)

// idBytes is the number of random bytes in a session ID: 144 bits, encoded
// as 24 URL-safe base64 characters.
const (
	idBytes       = 18
	idLen         = 24
	cookieVersion = 2 // 1: without the epoch; still read
	// maxCookieLen bounds the cookie value accepted for decoding.
	maxCookieLen = 1024
	// maxNodeIDLen bounds a node ID written into the cookie.
	maxNodeIDLen = 64
)

var errBadPayload = errors.New("tandem: malformed cookie payload")

// newID returns a fresh session ID from crypto/rand.
func newID() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// payload is what the cookie carries: no session data, only where to find
// it and under which ownership epoch it was issued. unsaved marks a cookie
// issued before its session was stored (a new session's cookie goes out
// with the header): if the session is not found, only its owner may hold
// it, so the cluster is not searched.
type payload struct {
	id      string
	owner   string
	backup  string
	epoch   uint64
	unsaved bool
}

// marshal encodes p: version 2, then ID, owner and backup (uvarint length
// and bytes each), the epoch (uvarint) and the unsaved flag (one byte).
// Version 1 lacks the epoch.
func (p payload) marshal() []byte {
	b := make([]byte, 0, 4+binary.MaxVarintLen64+len(p.id)+len(p.owner)+len(p.backup))
	b = append(b, cookieVersion)
	for _, s := range [...]string{p.id, p.owner, p.backup} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, p.epoch)
	if p.unsaved {
		return append(b, 1)
	}
	return append(b, 0)
}

func unmarshalPayload(b []byte) (payload, error) {
	if len(b) == 0 || b[0] < 1 || b[0] > cookieVersion {
		return payload{}, errBadPayload
	}
	version := b[0]
	b = b[1:]
	var f [3]string
	for i := range f {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > maxNodeIDLen || uint64(len(b)-k) < n {
			return payload{}, errBadPayload
		}
		f[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	var epoch uint64
	if version >= 2 {
		e, k := binary.Uvarint(b)
		if k <= 0 {
			return payload{}, errBadPayload
		}
		epoch, b = e, b[k:]
	}
	if len(b) != 1 || b[0] > 1 || !validID(f[0]) {
		return payload{}, errBadPayload
	}
	return payload{id: f[0], owner: f[1], backup: f[2], epoch: epoch, unsaved: b[0] == 1}, nil
}

// cookieCodec signs and encrypts payloads with securecookie, trying every
// key pair when decoding. Verifying a cookie (HMAC, then AES) costs
// microseconds and a dozen allocations, and a browser sends the same value
// on every request, so the codec remembers the values it verified: an exact
// string match is as good as a fresh check. The memory is bounded and each
// entry lives at most cacheTTL.
type cookieCodec struct {
	name   string
	codecs []*securecookie.SecureCookie
	now    func() time.Time
	cache  [cacheShards]cookieCache
}

const (
	cacheShards    = 32
	cachePerShard  = 512
	cacheTTL       = time.Minute
	cacheMaxCookie = 512
)

type cookieCache struct {
	mu sync.RWMutex
	m  map[string]cachedCookie
}

type cachedCookie struct {
	p       payload
	stale   bool
	expires int64
}

func newCookieCodec(name string, keys []KeyPair, maxAge time.Duration, now func() time.Time) *cookieCodec {
	c := &cookieCodec{name: name, now: now}
	for _, k := range keys {
		sc := securecookie.New(k.Hash, k.Block).
			SetSerializer(securecookie.NopEncoder{}).
			MaxAge(int(maxAge / time.Second)).
			MaxLength(maxCookieLen)
		c.codecs = append(c.codecs, sc)
	}
	return c
}

func (c *cookieCodec) encode(p payload) (string, error) {
	return c.codecs[0].Encode(c.name, p.marshal())
}

// decode returns the payload and whether it was sealed with an old key (so
// the cookie should be re-issued under the current one).
func (c *cookieCodec) decode(value string) (p payload, stale bool, err error) {
	if len(value) < 16 || len(value) > maxCookieLen {
		return payload{}, false, errBadPayload
	}
	now := c.now().UnixNano()
	sh := &c.cache[cacheShard(value)]
	sh.mu.RLock()
	e, ok := sh.m[value]
	sh.mu.RUnlock()
	if ok && now < e.expires {
		return e.p, e.stale, nil
	}
	for i, sc := range c.codecs {
		var b []byte
		if err = sc.Decode(c.name, value, &b); err != nil {
			continue
		}
		if p, err = unmarshalPayload(b); err != nil {
			return payload{}, false, err
		}
		if len(value) <= cacheMaxCookie {
			sh.put(value, cachedCookie{p: p, stale: i > 0, expires: now + int64(cacheTTL)})
		}
		return p, i > 0, nil
	}
	return payload{}, false, err
}

func cacheShard(v string) int {
	// The value ends in a MAC: its last bytes are as good as random.
	return int(v[len(v)-1]+v[len(v)-2]*7) % cacheShards
}

// put remembers a verified cookie, dropping an arbitrary entry when full.
func (sh *cookieCache) put(value string, e cachedCookie) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[string]cachedCookie, cachePerShard)
	}
	if len(sh.m) >= cachePerShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[value] = e
}

// cookieValue finds the named cookie in the request without allocating.
// With several cookies of that name it returns the first, as r.Cookie does.
func cookieValue(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

func (m *Manager) newCookie(value string, maxAge int) *http.Cookie {
	c := m.cfg.Cookie
	return &http.Cookie{
		Name:        c.Name,
		Value:       value,
		Path:        c.Path,
		Domain:      c.Domain,
		MaxAge:      maxAge,
		Secure:      c.Secure,
		HttpOnly:    !c.DisableHTTPOnly,
		SameSite:    c.SameSite,
		Partitioned: c.Partitioned,
	}
}
