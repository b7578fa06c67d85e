package node

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tandemsession/tandem/buddy"
)

// env is a fake environment.
type env map[string]string

func (e env) get(name string) string { return e[name] }

// keys returns an environment with valid keys, in hex.
func keys() env {
	return env{
		EnvClusterKey:     hex.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		EnvCookieHashKey:  hex.EncodeToString(bytes.Repeat([]byte{2}, 32)),
		EnvCookieBlockKey: hex.EncodeToString(bytes.Repeat([]byte{3}, 32)),
	}
}

func TestFromArgsFlagsAndEnvironment(t *testing.T) {
	e := keys()
	e[EnvID] = "from-env"
	e[EnvPeers] = "n1=10.0.0.1:7946, n2=10.0.0.2:7946"
	e[EnvMode] = "async"
	e[EnvHTTPAddr] = ":9000"
	e[EnvShutdownDelay] = "2s"
	cfg, err := FromArgs([]string{"-id", "n1", "-repl", ":7946", "-zone", "a"}, e.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "n1" || cfg.Zone != "a" || cfg.HTTPAddr != ":9000" || cfg.ReplAddr != ":7946" || cfg.Mode != buddy.Async ||
		cfg.ShutdownDelay != 2*time.Second || cfg.ShutdownTimeout != 20*time.Second || cfg.Logger == nil {
		t.Fatalf("config %+v", cfg)
	}
	if got := FormatPeers(cfg.Peers); got != "n1=10.0.0.1:7946,n2=10.0.0.2:7946" {
		t.Fatalf("peers %q", got)
	}
	if len(cfg.ClusterKeys) != 1 || len(cfg.CookieKeys) != 1 || cfg.CookieKeys[0].Block[0] != 3 {
		t.Fatalf("keys %d %d", len(cfg.ClusterKeys), len(cfg.CookieKeys))
	}

	// Defaults.
	e = keys()
	cfg, err = FromArgs([]string{"-id", "n1"}, e.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.ReplAddr != "127.0.0.1:7946" || cfg.Peers != nil || cfg.Mode != buddy.Sync || cfg.ShutdownDelay != 0 {
		t.Fatalf("defaults %+v", cfg)
	}
}

func TestFromArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		edit func(env)
		want string
	}{
		{"no ID", nil, nil, "-id"},
		{"bad peers", []string{"-peers", "n1"}, nil, "bad entry"},
		{"bad mode", []string{"-mode", "eventual"}, nil, "-mode"},
		{"bad level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"bad duration", []string{"-shutdown-timeout", "soon"}, nil, "-shutdown-timeout"},
		{"negative duration", []string{"-shutdown-delay", "-1s"}, nil, "-shutdown-delay"},
		{"extra argument", []string{"serve"}, nil, "unexpected"},
		{"unknown flag", []string{"-port", "80"}, nil, "-port"},
		{"no cluster key", nil, func(e env) { delete(e, EnvClusterKey) }, EnvClusterKey + " is not set"},
		{"short cluster key", nil, func(e env) { e[EnvClusterKey] = hex.EncodeToString(make([]byte, 16)) }, EnvClusterKey + "[0]: 16 bytes, need 32"},
		{"second cluster key bad", nil, func(e env) { e[EnvClusterKey] += ",zz!" }, EnvClusterKey + "[1]"},
		{"no hash key", nil, func(e env) { delete(e, EnvCookieHashKey) }, EnvCookieHashKey + " is not set"},
		{"no block key", nil, func(e env) { e[EnvCookieBlockKey] = " " }, EnvCookieBlockKey + " is not set"},
		{"short hash key", nil, func(e env) { e[EnvCookieHashKey] = hex.EncodeToString(make([]byte, 31)) }, EnvCookieHashKey + "[0]: 31 bytes"},
		{"bad block size", nil, func(e env) { e[EnvCookieBlockKey] = hex.EncodeToString(make([]byte, 20)) }, EnvCookieBlockKey + "[0]: 20 bytes"},
		{"unpaired cookie keys", nil, func(e env) { e[EnvCookieHashKey] += "," + e[EnvCookieHashKey] }, "pair by position"},
		{"undecodable", nil, func(e env) { e[EnvCookieHashKey] = "not a key!" }, "neither hex nor base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := keys()
			if tc.edit != nil {
				tc.edit(e)
			}
			args := tc.args
			if tc.name != "no ID" {
				args = append([]string{"-id", "n1"}, args...)
			}
			_, err := FromArgs(args, e.get, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			for _, k := range keys() {
				if strings.Contains(err.Error(), k) {
					t.Fatalf("the error shows a key: %v", err)
				}
			}
		})
	}
	if _, err := FromArgs([]string{"-h"}, keys().get, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestDecodeKey(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	for _, s := range []string{
		hex.EncodeToString(key),
		strings.ToUpper(hex.EncodeToString(key)),
		"hex:" + hex.EncodeToString(key),
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		"base64:" + base64.StdEncoding.EncodeToString(key),
		" " + hex.EncodeToString(key) + "\n",
	} {
		got, err := DecodeKey(s)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("DecodeKey(%q) = %x, %v", s, got, err)
		}
	}
	// A value of hex digits is hex, unless the prefix says base64.
	if got, err := DecodeKey("base64:abcd"); err != nil || len(got) != 3 {
		t.Errorf("base64:abcd = %x, %v", got, err)
	}
	for _, s := range []string{"", "hex:xyz", "base64:***", "***"} {
		if got, err := DecodeKey(s); err == nil && len(got) > 0 {
			t.Errorf("DecodeKey(%q) = %x, want an error", s, got)
		}
	}
}

func TestFromArgsDNSDiscovery(t *testing.T) {
	e := keys()
	e[EnvDNSSRV] = "_repl._tcp.tandem.default.svc.cluster.local."
	e[EnvDiscoveryInterval] = "3s"
	cfg, err := FromArgs([]string{"-id", "tandem-0", "-repl", ":7946"}, e.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := cfg.Discovery.(fmt.Stringer); !ok || s.String() != "dns srv _repl._tcp.tandem.default.svc.cluster.local." {
		t.Fatalf("discovery %v", cfg.Discovery)
	}
	if cfg.DiscoveryInterval != 3*time.Second {
		t.Fatalf("interval %v", cfg.DiscoveryInterval)
	}

	// A records: the port defaults to -repl's.
	e = keys()
	cfg, err = FromArgs([]string{"-id", "10.244.1.7", "-repl", ":7000", "-dns-host", "tandem.default.svc.cluster.local."}, e.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Discovery.(fmt.Stringer).String(); s != "dns ip4 tandem.default.svc.cluster.local. port 7000" {
		t.Fatalf("discovery %s", s)
	}
	if cfg.DiscoveryInterval != 10*time.Second {
		t.Fatalf("default interval %v", cfg.DiscoveryInterval)
	}
	e[EnvDNSPort] = "7946"
	cfg, err = FromArgs([]string{"-id", "fd00::7", "-dns-host", "tandem.default.svc.cluster.local."}, e.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Discovery.(fmt.Stringer).String(); s != "dns ip6 tandem.default.svc.cluster.local. port 7946" {
		t.Fatalf("discovery %s", s)
	}

	// Without either flag, no discovery.
	if cfg, err := FromArgs([]string{"-id", "n1"}, keys().get, io.Discard); err != nil || cfg.Discovery != nil {
		t.Fatalf("no DNS flags: %v, %v", cfg.Discovery, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"both", []string{"-id", "n1", "-dns-srv", "_r._tcp.a.", "-dns-host", "a."}, "set one"},
		{"port with srv", []string{"-id", "n1", "-dns-srv", "_r._tcp.a.", "-dns-port", "1"}, "-dns-port"},
		{"port alone", []string{"-id", "n1", "-dns-port", "1"}, "-dns-port"},
		{"bad srv name", []string{"-id", "n1", "-dns-srv", "not a name"}, "-dns-srv"},
		{"srv: ID with a dot", []string{"-id", "tandem-0.tandem", "-dns-srv", "_r._tcp.a."}, "pod name"},
		{"srv: ID in upper case", []string{"-id", "Tandem-0", "-dns-srv", "_r._tcp.a."}, "pod name"},
		{"host: ID not an IP", []string{"-id", "tandem-0", "-dns-host", "a."}, "IP address"},
		{"host: ID not canonical", []string{"-id", "fd00:0::7", "-dns-host", "a."}, "IP address"},
		{"host: bad port", []string{"-id", "10.0.0.1", "-dns-host", "a.", "-dns-port", "0"}, "-dns-port"},
		{"host: bad name", []string{"-id", "10.0.0.1", "-dns-host", "a..b"}, "-dns-host"},
		{"bad interval", []string{"-id", "n1", "-discovery-interval", "often"}, "-discovery-interval"},
		{"zero interval", []string{"-id", "n1", "-discovery-interval", "0s"}, "-discovery-interval"},
	} {
		if _, err := FromArgs(tc.args, keys().get, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}
