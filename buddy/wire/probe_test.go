package wire

import (
	"errors"
	"testing"
)

func TestProbeMessagesRoundTrip(t *testing.T) {
	p, err := DecodeProbe(AppendProbe(nil, Probe{Target: "n7"}))
	if err != nil || p.Target != "n7" {
		t.Fatalf("probe %+v %v", p, err)
	}
	for _, r := range []ProbeReply{{}, {OK: true, Incarnation: 1 << 60}, {OK: true, Draining: true, Incarnation: 3}} {
		got, err := DecodeProbeReply(AppendProbeReply(nil, r))
		if err != nil || got != r {
			t.Fatalf("probe reply %+v -> %+v %v", r, got, err)
		}
	}
	for _, r := range []Rumour{{Target: "n3", Incarnation: 42}, {Target: "n4", Incarnation: 1, Alive: true}} {
		ru, err := DecodeRumour(AppendRumour(nil, r))
		if err != nil || ru != r {
			t.Fatalf("rumour %+v: %+v %v", r, ru, err)
		}
	}
	for _, b := range [][]byte{nil, {0}, {3, 'a'}, {1, 'a', 'b'}} {
		if _, err := DecodeProbe(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("probe %q: %v", b, err)
		}
	}
	for _, b := range [][]byte{nil, {0}, {3, 'a'}, {0, 1, 1}, {1, 'a', 0x80}, {1, 'a', 1}, {1, 'a', 1, 2}, {1, 'a', 1, 0, 0}} {
		if _, err := DecodeRumour(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("rumour %q: %v", b, err)
		}
	}
	for _, b := range [][]byte{nil, {3, 0}, {1}, {1, 0x80}, {1, 1, 1}} {
		if _, err := DecodeProbeReply(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("probe reply %q: %v", b, err)
		}
	}
}
