package compress

// Generators of realistic session payloads for tests, examples and
// benchmarks. Everything is deterministic for a given seed.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// payloadKind names one family of generated payloads.
type payloadKind string

const (
	kindDelta   payloadKind = "delta"   // ~280 B JSON session delta
	kindProfile payloadKind = "profile" // user profile JSON, ~600 B
	kindCart    payloadKind = "cart"    // cart with 3-12 line items, ~1-3 KiB
	kindTokens  payloadKind = "tokens"  // CSRF / random tokens: incompressible
	kindMixed   payloadKind = "mixed"   // 4 KiB mixed session
	kindGob     payloadKind = "gob"     // gob-encoded session struct
)

var allKinds = []payloadKind{kindDelta, kindProfile, kindCart, kindTokens, kindMixed, kindGob}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

var (
	firstNames = []string{"Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Alan", "Radia", "Edsger", "Hedy"}
	lastNames  = []string{"Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen", "Turing", "Perlman", "Dijkstra", "Lamarr"}
	domains    = []string{"example.com", "mail.example.org", "corp.example.net", "example.io"}
	locales    = []string{"en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR", "es-ES"}
	zones      = []string{"America/New_York", "Europe/Berlin", "Europe/London", "Asia/Tokyo", "America/Sao_Paulo", "Europe/Madrid"}
	roles      = []string{"customer", "admin", "support", "beta", "editor", "viewer"}
	products   = []string{"Espresso Beans 1kg", "Ceramic Pour-Over", "Burr Grinder", "Milk Frother", "Paper Filters (100)", "Travel Mug 350ml", "Descaling Tablets", "Cold Brew Jar", "Digital Scale", "Gooseneck Kettle"}
	currencies = []string{"USD", "EUR", "GBP", "JPY"}
	pages      = []string{"/", "/cart", "/checkout/shipping", "/checkout/payment", "/account/orders", "/products/burr-grinder", "/search?q=kettle", "/account/settings"}
	userAgents = []string{
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	}
	flashes = []string{"Item added to your cart.", "Your settings were saved.", "Please sign in to continue.", "Coupon applied: 10% off.", "Shipping address updated."}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// token returns n random bytes in URL-safe base64, like a CSRF token or
// session ID: it does not compress.
func token(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// deltaTime is when delta number seed happened: deltas are ~50 ms apart,
// so those in one batch share all but the last digits.
func deltaTime(seed uint64) int64 {
	base := time.Date(2025, 11, 25, 9, 0, 0, 0, time.UTC).UnixMilli()
	return base + int64(seed%(1<<20))*50 + int64(seed*7919%50)
}

func timestamp(r *rand.Rand) int64 {
	base := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	return base + r.Int64N(30*24*3600*1000)
}

type profile struct {
	UserID    int64             `json:"user_id"`
	Name      string            `json:"name"`
	Email     string            `json:"email"`
	Roles     []string          `json:"roles"`
	Locale    string            `json:"locale"`
	TimeZone  string            `json:"tz"`
	Verified  bool              `json:"email_verified"`
	CreatedAt time.Time         `json:"created_at"`
	LastSeen  time.Time         `json:"last_seen"`
	Prefs     map[string]string `json:"prefs"`
	Avatar    string            `json:"avatar_url"`
}

func genProfile(r *rand.Rand) profile {
	first, last := pick(r, firstNames), pick(r, lastNames)
	uid := 10000 + r.Int64N(9000000)
	nroles := 1 + r.IntN(3)
	rs := make([]string, 0, nroles)
	for i := 0; i < nroles; i++ {
		rs = append(rs, pick(r, roles))
	}
	return profile{
		UserID:    uid,
		Name:      first + " " + last,
		Email:     fmt.Sprintf("%s.%s%d@%s", first, last, r.IntN(100), pick(r, domains)),
		Roles:     rs,
		Locale:    pick(r, locales),
		TimeZone:  pick(r, zones),
		Verified:  r.IntN(4) != 0,
		CreatedAt: time.UnixMilli(timestamp(r) - 400*24*3600*1000).UTC(),
		LastSeen:  time.UnixMilli(timestamp(r)).UTC(),
		Prefs: map[string]string{
			"theme":          pick(r, []string{"light", "dark", "system"}),
			"currency":       pick(r, currencies),
			"newsletter":     strconv.FormatBool(r.IntN(2) == 0),
			"items_per_page": strconv.Itoa(pick(r, []int{12, 24, 48})),
		},
		Avatar: fmt.Sprintf("https://cdn.example.com/avatars/%d/%s.webp", uid, token(r, 9)),
	}
}

type lineItem struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Qty        int    `json:"qty"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	AddedAt    int64  `json:"added_at"`
}

type cart struct {
	CartID   string     `json:"cart_id"`
	Items    []lineItem `json:"items"`
	Coupon   string     `json:"coupon,omitempty"`
	Subtotal int64      `json:"subtotal_cents"`
	Updated  int64      `json:"updated_at"`
}

func genCart(r *rand.Rand, items int) cart {
	c := cart{CartID: "cart_" + token(r, 12), Updated: timestamp(r)}
	cur := pick(r, currencies)
	for i := 0; i < items; i++ {
		it := lineItem{
			SKU:        fmt.Sprintf("SKU-%05d-%s", r.IntN(100000), pick(r, []string{"BLK", "WHT", "RED", "STD"})),
			Name:       pick(r, products),
			Qty:        1 + r.IntN(4),
			PriceCents: 199 + r.Int64N(25000),
			Currency:   cur,
			AddedAt:    timestamp(r),
		}
		c.Subtotal += it.PriceCents * int64(it.Qty)
		c.Items = append(c.Items, it)
	}
	if r.IntN(3) == 0 {
		c.Coupon = "SAVE" + strconv.Itoa(5*(1+r.IntN(6)))
	}
	return c
}

// delta is the shape of one replicated change to a session.
type delta struct {
	SessionID string `json:"sid"`
	Seq       uint64 `json:"seq"`
	TS        int64  `json:"ts"`
	Op        string `json:"op"`
	Key       string `json:"key"`
	Value     any    `json:"value,omitempty"`
	UserID    int64  `json:"uid"`
	Origin    string `json:"origin"`
	Route     string `json:"route"`
	Expires   int64  `json:"exp"`
}

// genDelta returns a delta for one of a pool of sessions: consecutive
// seeds in groups of four share a session, as deltas of active sessions
// do in a replication batch.
func genDelta(seed uint64) delta {
	sr := newRand(seed/4 + 1<<50)
	r := newRand(seed)
	d := delta{
		SessionID: "s_" + token(sr, 16),
		UserID:    10000 + sr.Int64N(9000000),
		Origin:    pick(sr, []string{"tandem-a.eu-west-1", "tandem-b.eu-west-1", "tandem-c.us-east-2"}),
		Seq:       seed%5000 + 1,
		TS:        deltaTime(seed),
		Route:     pick(r, pages),
		Op:        "set",
	}
	d.Expires = d.TS + 30*60*1000
	switch r.IntN(8) {
	case 0, 1, 2:
		d.Key = "cart.items." + strconv.Itoa(r.IntN(8))
		c := genCart(r, 1)
		d.Value = c.Items[0]
	case 3:
		d.Key = "flash"
		d.Value = pick(r, flashes)
	case 4:
		d.Key = "prefs"
		d.Value = map[string]string{"theme": pick(r, []string{"light", "dark", "system"}), "currency": pick(r, currencies), "locale": pick(r, locales)}
	case 5:
		d.Key = "csrf"
		d.Value = token(r, 32)
	case 6:
		d.Key = "nav"
		d.Value = map[string]any{"page": pick(r, pages), "ref": pick(r, pages), "at": d.TS - r.Int64N(5000)}
	default:
		d.Op = "del"
		d.Key = "checkout.draft." + strconv.Itoa(r.IntN(4))
	}
	return d
}

// session is a whole session as stored by a Gin/Echo app.
type session struct {
	ID        string
	User      profile
	Cart      cart
	CSRF      string
	Flash     []string
	History   []string
	CreatedAt int64
	Expires   int64
	Values    map[string]string
}

func genSession(r *rand.Rand, items int) session {
	s := session{
		ID:        "s_" + token(r, 16),
		User:      genProfile(r),
		Cart:      genCart(r, items),
		CSRF:      token(r, 32),
		CreatedAt: timestamp(r),
		Values:    map[string]string{},
	}
	s.Expires = s.CreatedAt + 24*3600*1000
	for i := r.IntN(3); i > 0; i-- {
		s.Flash = append(s.Flash, pick(r, flashes))
	}
	for i := 3 + r.IntN(6); i > 0; i-- {
		s.History = append(s.History, pick(r, pages))
	}
	s.Values["user_agent"] = pick(r, userAgents)
	s.Values["ip"] = fmt.Sprintf("203.0.113.%d", r.IntN(255))
	s.Values["oauth_state"] = token(r, 24)
	s.Values["ab_bucket"] = pick(r, []string{"control", "variant-a", "variant-b"})
	return s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // test helper: only fixed, marshalable types
	}
	return b
}

// genPayload returns one payload of the given kind at its natural size.
func genPayload(kind payloadKind, seed uint64) []byte {
	r := newRand(seed)
	switch kind {
	case kindDelta:
		return mustJSON(genDelta(seed))
	case kindProfile:
		return mustJSON(genProfile(r))
	case kindCart:
		return mustJSON(genCart(r, 3+r.IntN(10)))
	case kindTokens:
		m := map[string]string{}
		for _, k := range []string{"csrf", "sid", "oauth_state", "nonce", "refresh", "pkce_verifier"} {
			m[k] = token(r, 32)
		}
		return mustJSON(m)
	case kindMixed:
		return sizedPayload(4096, seed)
	case kindGob:
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(genSession(r, 2+r.IntN(4))); err != nil {
			panic(err)
		}
		return buf.Bytes()
	}
	panic("unknown payload kind " + kind)
}

// sizedPayload returns a realistic mixed session payload of exactly size
// bytes: JSON fragments of profiles, carts, deltas and tokens, appended
// until the size is reached and then cut.
func sizedPayload(size int, seed uint64) []byte {
	r := newRand(seed)
	out := make([]byte, 0, size+4096)
	out = append(out, '{')
	for len(out) < size {
		if len(out) > 1 {
			out = append(out, ',')
		}
		switch r.IntN(6) {
		case 0:
			out = append(out, `"user":`...)
			out = append(out, mustJSON(genProfile(r))...)
		case 1:
			out = append(out, `"cart":`...)
			out = append(out, mustJSON(genCart(r, 1+r.IntN(4)))...)
		case 2, 3:
			out = append(out, `"delta":`...)
			out = append(out, mustJSON(genDelta(r.Uint64()))...)
		case 4:
			out = append(out, `"csrf":"`...)
			out = append(out, token(r, 32)...)
			out = append(out, '"')
		default:
			out = append(out, `"flash":`...)
			out = append(out, mustJSON(pick(r, flashes))...)
			out = append(out, `,"ua":`...)
			out = append(out, mustJSON(pick(r, userAgents))...)
		}
	}
	return out[:size]
}

// batch concatenates payloads the way replication batches deltas: each is
// prefixed with its uvarint length.
func batch(payloads [][]byte) []byte {
	var n int
	for _, p := range payloads {
		n += binary.MaxVarintLen64 + len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range payloads {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

// kindBatch returns a batch of n payloads of kind, seeds seed..seed+n-1.
func kindBatch(kind payloadKind, n int, seed uint64) []byte {
	ps := make([][]byte, n)
	for i := range ps {
		ps[i] = genPayload(kind, seed+uint64(i))
	}
	return batch(ps)
}

// sizedBatch returns a batch of n sized payloads.
func sizedBatch(size, n int, seed uint64) []byte {
	ps := make([][]byte, n)
	for i := range ps {
		ps[i] = sizedPayload(size, seed+uint64(i))
	}
	return batch(ps)
}

// trainingSamples returns n training samples of every kind and a spread
// of sizes, from seeds that benchmarks and tests do not use for inputs.
func trainingSamples(n int) [][]byte {
	const base = 1 << 40
	var out [][]byte
	sizes := []int{64, 128, 256, 512, 1024, 2048, 4096}
	for i := 0; i < n; i++ {
		seed := base + uint64(i)
		out = append(out, genPayload(allKinds[i%len(allKinds)], seed))
		out = append(out, sizedPayload(sizes[i%len(sizes)], seed))
	}
	return out
}
