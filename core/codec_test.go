package core

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
)

// The JSON codec's fast paths must give encoding/json's bytes and values.
func TestJSONCodecFastPathsMatchEncodingJSON(t *testing.T) {
	var c JSONCodec
	values := []any{"", "ann", "a b c ~!", "quote\"", "back\\slash", "<html>", "a&b", "tab\t", "é", "\u2028",
		0, 1, -1, 42, math.MaxInt64, math.MinInt64, int64(7), int64(-9), true, false, 3.5, []byte("raw")}
	for _, v := range values {
		got, err := c.Marshal(v)
		want, werr := json.Marshal(v)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Errorf("Marshal(%#v) = %q, %v; encoding/json: %q, %v", v, got, err, want, werr)
		}
	}
	inputs := []string{`""`, `"ann"`, `"a\"b"`, `"\u00e9"`, `"é"`, `"<"`, `0`, `-0`, `42`, `-42`, `007`, `1e3`, `1.5`,
		`9223372036854775807`, `9223372036854775808`, `-9223372036854775809`, `null`, `"x`, `x"`, `12345678901234567890`, ``}
	for _, in := range inputs {
		var gs, ws string
		gerr, werr := c.Unmarshal([]byte(in), &gs), json.Unmarshal([]byte(in), &ws)
		if gs != ws || (gerr == nil) != (werr == nil) {
			t.Errorf("Unmarshal(%q, *string) = %q, %v; encoding/json: %q, %v", in, gs, gerr, ws, werr)
		}
		var gi, wi int
		gerr, werr = c.Unmarshal([]byte(in), &gi), json.Unmarshal([]byte(in), &wi)
		if gi != wi || (gerr == nil) != (werr == nil) {
			t.Errorf("Unmarshal(%q, *int) = %d, %v; encoding/json: %d, %v", in, gi, gerr, wi, werr)
		}
		var g64, w64 int64
		gerr, werr = c.Unmarshal([]byte(in), &g64), json.Unmarshal([]byte(in), &w64)
		if g64 != w64 || (gerr == nil) != (werr == nil) {
			t.Errorf("Unmarshal(%q, *int64) = %d, %v; encoding/json: %d, %v", in, g64, gerr, w64, werr)
		}
	}
}

// Every string of one to twenty bytes drawn from a set that includes each
// kind of byte the fast path must refuse, at every position of a word.
func TestJSONCodecStringsMatchEncodingJSON(t *testing.T) {
	var c JSONCodec
	alphabet := []byte("aZ~ \x00\x1f\x7f\x80\xff\"\\<>&é")
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := make([]byte, 1+rng.IntN(20))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		v := string(b)
		got, err := c.Marshal(v)
		want, _ := json.Marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Marshal(%q) = %q, %v; encoding/json: %q", v, got, err, want)
		}
		var gs, ws string
		gerr, werr := c.Unmarshal(b, &gs), json.Unmarshal(b, &ws)
		if gs != ws || (gerr == nil) != (werr == nil) {
			t.Fatalf("Unmarshal(%q) = %q, %v; encoding/json: %q, %v", b, gs, gerr, ws, werr)
		}
	}
}

// SetRaw stores the bytes themselves, a copy of them; GetRaw returns a copy.
func TestSetRawGetRaw(t *testing.T) {
	m, _ := newManager(t, nil)
	val := []byte("<p>rendered & raw</p>")
	var got []byte
	c := newClient(t, m, func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/set":
			if err := s.SetRaw("frag", val); err != nil {
				t.Error(err)
			}
			_ = s.Set("n", 5)
		case "/get":
			b, ok := s.GetRaw("frag")
			if !ok {
				t.Error("frag missing")
			}
			got = bytes.Clone(b)
			b[0] = 'X' // a copy: the stored value must not change
			n, _ := s.GetRaw("n")
			if string(n) != strconv.Itoa(5) {
				t.Errorf("GetRaw of a Set value = %q", n)
			}
			if _, ok := s.GetRaw("absent"); ok {
				t.Error("absent key present")
			}
		}
	})
	c.do("/set")
	val[0] = 'Y' // SetRaw copied
	c.do("/get")
	c.do("/get")
	if string(got) != "<p>rendered & raw</p>" {
		t.Fatalf("GetRaw = %q", got)
	}
	m2, _ := newManager(t, func(cfg *Config) { cfg.Limits.MaxValueSize = 4 })
	c2 := newClient(t, m2, func(w http.ResponseWriter, r *http.Request) {
		if err := FromContext(r.Context()).SetRaw("k", []byte("12345")); err == nil {
			t.Error("SetRaw over MaxValueSize succeeded")
		}
		if err := FromContext(r.Context()).SetRaw("", []byte("1")); err == nil {
			t.Error("SetRaw with an empty key succeeded")
		}
	})
	c2.do("/")
}
