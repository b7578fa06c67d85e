package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemsession/tandem/bench/internal/loadreport"
)

// TestMain runs the node child when the driver under test re-executes this
// test binary as one.
func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "node" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func defaults() options {
	return options{
		nodes: 2, mode: "sync", clients: 4, duration: 1500 * time.Millisecond, warmup: 100 * time.Millisecond,
		requests: 100_000, sessionSize: 512, writeRatio: 1, scenario: "steady", target: "tandem",
		sample: filepath.Join("..", "testdata", "session.json"), quiet: true, bucket: 100 * time.Millisecond,
		keys: 8, requestTimeout: 5 * time.Second,
	}
}

func runReport(t *testing.T, o options) *loadreport.Report {
	t.Helper()
	o.jsonOut = filepath.Join(t.TempDir(), "r.json")
	if err := runLoad(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(o.jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	var r loadreport.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// TestFailover runs a 2-node sync cluster as child processes, SIGKILLs one
// node under load and checks that no acknowledged write was lost. It
// asserts behaviour only.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	o := defaults()
	o.scenario, o.killAfter = "failover", 400*time.Millisecond
	r := runReport(t, o)
	v := r.Load.Verify
	if r.Kill == nil || v == nil || v.AckedWrites == 0 {
		t.Fatalf("no kill or no verification: %+v %+v", r.Kill, v)
	}
	if v.LostWrites != 0 || v.SessionsLost != 0 || v.Unreadable != 0 {
		t.Fatalf("sync failover lost data: %+v", *v)
	}
	if r.Repl == nil || r.Repl.BytesWire == 0 || r.FullCopyWire == 0 || r.ServerCPU <= 0 {
		t.Fatalf("replication or CPU figures missing: %+v, full copy %d, cpu %v", r.Repl, r.FullCopyWire, r.ServerCPU)
	}
}

func TestProcCPU(t *testing.T) {
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("no error for a missing process")
	}
}

func TestValidate(t *testing.T) {
	for _, edit := range []func(*options){
		func(o *options) { o.nodes = 0 },
		func(o *options) { o.mode = "fast" },
		func(o *options) { o.target = "memcached" },
		func(o *options) { o.writeRatio = 2 },
		func(o *options) { o.scenario = "chaos" },
	} {
		o := defaults()
		edit(&o)
		if o.validate() == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	o := defaults()
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
}
