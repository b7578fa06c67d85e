// Package loadreport is the JSON report of one run of the load driver
// (bench/load -json), shared by the driver that writes it and bench/report,
// which reads it.
package loadreport

import (
	"github.com/tandemsession/tandem/bench/internal/inproc"
	"github.com/tandemsession/tandem/bench/internal/loadgen"
)

// Report is the result of one run, as -json writes it.
type Report struct {
	Label       string  `json:"label"`
	Target      string  `json:"target"`
	Nodes       int     `json:"nodes"`
	Mode        string  `json:"mode,omitempty"`
	Codec       string  `json:"codec,omitempty"`
	Clients     int     `json:"clients"`
	WriteRatio  float64 `json:"write_ratio"`
	SessionSize int     `json:"session_size"`
	Scenario    string  `json:"scenario"`
	Duration    string  `json:"duration"`
	Warmup      string  `json:"warmup"`
	Command     string  `json:"command"`
	Date        string  `json:"date"`
	Machine     Machine `json:"machine"`

	RPS  float64 `json:"rps"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`

	// CPU seconds per 1,000 successful requests.
	ServerCPUPer1k float64 `json:"server_cpu_s_per_1k"`
	DriverCPUPer1k float64 `json:"driver_cpu_s_per_1k"`
	ServerCPU      float64 `json:"server_cpu_s"`
	DriverCPU      float64 `json:"driver_cpu_s"`

	Repl *ReplReport `json:"replication,omitempty"`
	// FullCopyWire is what one write would put on the wire if the whole
	// session were sent (computed: a KindFull record, compressed, sealed).
	FullCopyWire int `json:"full_copy_wire_bytes,omitempty"`
	FullCopyRaw  int `json:"full_copy_raw_bytes,omitempty"`

	Kill *KillReport     `json:"kill,omitempty"`
	Load *loadgen.Result `json:"load"`
}

// ReplReport is the replication counters over the measured phase.
type ReplReport struct {
	inproc.Repl
	WirePerWrite    float64 `json:"wire_bytes_per_write"`
	WirePerRecord   float64 `json:"wire_bytes_per_record"`
	RawPerRecord    float64 `json:"raw_bytes_per_record"`
	RecordsPerBatch float64 `json:"records_per_batch"`
	// RTTP50 and RTTP99 bound the batch round trip (power-of-two buckets,
	// microseconds): in sync mode the wait a write adds, in async mode the
	// replication lag once a batch is sent.
	RTTP50 uint64 `json:"batch_rtt_p50_us"`
	RTTP99 uint64 `json:"batch_rtt_p99_us"`
	// MaxQueue is the most records seen queued for a buddy (sampled every
	// 250 ms); DrainMs the time the queues took to empty after the load
	// stopped: together, the async replication lag.
	MaxQueue int     `json:"max_queue_depth"`
	DrainMs  float64 `json:"drain_ms"`
}

// KillReport says what was killed and when.
type KillReport struct {
	What      string  `json:"what"`
	AtMs      float64 `json:"at_ms"`
	RestartMs float64 `json:"restart_ms,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU     string  `json:"cpu"`
	Cores   int     `json:"cores"`
	MemGiB  float64 `json:"mem_gib"`
	Kernel  string  `json:"kernel"`
	Go      string  `json:"go"`
	LoadAvg string  `json:"loadavg_at_start"`
}
