package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/bench/internal/inproc"
	"github.com/tandemsession/tandem/bench/internal/loadgen"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/buddy/wire"
	"github.com/tandemsession/tandem/compress"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/internal/nodeapp"
)

// tuneConfig is one configuration the tuning mode measures.
type tuneConfig struct {
	name  string
	codec string // compress.Config.Codec
	dict  bool   // with the dictionary trained on the sample
	batch int    // MaxBatchRecords (0: default)
	mode  inproc.Mode
}

// tuneResult is what one configuration measured.
type tuneResult struct {
	tuneConfig
	rps, p99       float64 // req/s, ms
	spread         float64 // (max-min)/mean of req/s over the rounds
	wirePerWrite   float64
	rawPerWrite    float64
	recordsPerBtch float64
	writes         int64
}

// dictID is the ID the trained dictionary is registered under.
const dictID = 1

// tune sweeps codec, batch size and mode on short in-process runs of a
// 2-node cluster whose users hold the sample session and rewrite its
// attributes, and prints the measurements and a recommended configuration.
func tune(ctx context.Context, o options) error {
	gin.SetMode(gin.ReleaseMode)
	sample, err := loadgen.ReadSample(o.sample)
	if err != nil {
		return err
	}
	clients := o.clients
	if clients > 64 {
		clients = 64
	}
	w := os.Stdout
	rounds := max(o.tuneRounds, 1)
	fmt.Fprintf(w, "tuning on %s: %d attributes, %d bytes; 2 nodes in this process, %d clients, writes rewrite one attribute each (digits changed); %v per configuration, %d interleaved rounds (means, ± half the spread)\n",
		o.sample, len(sample), loadgen.EncodedSize(sample), clients, o.tuneDuration, rounds)

	dict, err := trainDictionary(sample)
	if err != nil {
		return fmt.Errorf("training a dictionary: %w", err)
	}
	fmt.Fprintf(w, "trained a %d-byte zstd dictionary on %d batches of deltas made from the sample (the runs send deltas of the same sample, so its gain here is an upper bound: train on captured deltas for production)\n", len(dict), dictSamples)

	measure := func(tc tuneConfig) (tuneResult, error) {
		if ctx.Err() != nil {
			return tuneResult{}, ctx.Err()
		}
		c, err := inproc.Start(2, tc.mode, func(bc *buddy.Config) {
			bc.Compression.Codec = tc.codec
			if tc.dict {
				reg := compress.NewRegistry()
				if err := reg.Add(dictID, dict); err == nil {
					_ = reg.SetActive(dictID)
				}
				bc.Compression.Dictionaries = reg
				bc.Compression.MinSize = 1
			}
			if tc.batch > 0 {
				bc.MaxBatchRecords = tc.batch
			}
		})
		if err != nil {
			return tuneResult{}, err
		}
		defer c.Close()
		var before, after inproc.Repl
		snap := func(dst *inproc.Repl) {
			st, err := c.Stats()
			if err == nil {
				*dst = inproc.Sum(st)
			}
		}
		res, err := loadgen.Run(loadgen.Target{Addrs: c.Addrs(), IDs: c.IDs(), RouteCookie: nodeapp.RouteCookie},
			loadgen.Options{
				Clients: clients, Duration: o.tuneDuration, Requests: o.requests, Warmup: 300 * time.Millisecond,
				WriteRatio: 1, Session: sample, Mutate: true,
				OnMeasure: func() { snap(&before) },
				OnDone: func() {
					_ = c.Settle(10 * time.Second)
					snap(&after)
				},
			})
		if err != nil {
			return tuneResult{}, err
		}
		if res.SeedFailures > 0 {
			return tuneResult{}, fmt.Errorf("%s: %d sessions could not be seeded (%v %v)", tc.name, res.SeedFailures, res.Statuses, res.Errors)
		}
		d := after.Sub(before)
		r := tuneResult{tuneConfig: tc, rps: res.RPS, p99: res.P99 / 1000, writes: res.Writes}
		if res.Writes > 0 {
			r.wirePerWrite = float64(d.BytesWire) / float64(res.Writes)
			r.rawPerWrite = float64(d.BytesRaw) / float64(res.Writes)
		}
		if d.Batches > 0 {
			r.recordsPerBtch = float64(d.Records) / float64(d.Batches)
		}
		return r, nil
	}
	// sweep measures every configuration o.tuneRounds times, interleaved,
	// and returns the means.
	sweep := func(tcs []tuneConfig) ([]tuneResult, error) {
		sums := make([]tuneResult, len(tcs))
		lo, hi := make([]float64, len(tcs)), make([]float64, len(tcs))
		for round := range rounds {
			for i, tc := range tcs {
				r, err := measure(tc)
				if err != nil {
					return nil, err
				}
				s := &sums[i]
				if round == 0 {
					s.tuneConfig = tc
					lo[i], hi[i] = r.rps, r.rps
				}
				s.rps += r.rps / float64(rounds)
				s.p99 += r.p99 / float64(rounds)
				s.wirePerWrite += r.wirePerWrite / float64(rounds)
				s.rawPerWrite += r.rawPerWrite / float64(rounds)
				s.recordsPerBtch += r.recordsPerBtch / float64(rounds)
				s.writes += r.writes
				lo[i], hi[i] = min(lo[i], r.rps), max(hi[i], r.rps)
			}
		}
		for i, r := range sums {
			sums[i].spread = (hi[i] - lo[i]) / max(r.rps, 1)
			fmt.Fprintf(w, "  %-28s %8.0f req/s (±%2.0f%%)  p99 %6.2f ms  %7.1f wire B/write  (raw %.0f, %.1f records/batch)\n",
				r.name, r.rps, 50*sums[i].spread, r.p99, r.wirePerWrite, r.rawPerWrite, r.recordsPerBtch)
		}
		return sums, nil
	}

	// 1. Codecs, sync, default batch size.
	fmt.Fprintln(w, "\ncodec (sync, MaxBatchRecords 1024):")
	codecs, err := sweep([]tuneConfig{
		{name: "none", codec: compress.NameNone, mode: inproc.Sync},
		{name: "s2 (default)", codec: compress.NameS2, mode: inproc.Sync},
		{name: "zstd-fastest", codec: compress.NameZstdFastest, mode: inproc.Sync},
		{name: "zstd", codec: compress.NameZstd, mode: inproc.Sync},
		{name: "zstd-fastest + dictionary", codec: compress.NameZstdFastest, dict: true, mode: inproc.Sync},
	})
	if err != nil {
		return err
	}
	best := pickCodec(codecs)

	// 2. Batch size with that codec.
	fmt.Fprintf(w, "\nMaxBatchRecords (sync, %s):\n", best.name)
	var btcs []tuneConfig
	for _, n := range []int{1, 16, 128, 1024} {
		tc := best.tuneConfig
		tc.batch = n
		tc.name = fmt.Sprintf("MaxBatchRecords %d", n)
		btcs = append(btcs, tc)
	}
	batches, err := sweep(btcs)
	if err != nil {
		return err
	}
	batch := pickBatch(batches)

	// 3. Mode.
	fmt.Fprintf(w, "\nmode (%s, MaxBatchRecords %d):\n", best.name, batch.batch)
	var mtcs []tuneConfig
	for _, m := range []inproc.Mode{inproc.Sync, inproc.Async} {
		tc := batch.tuneConfig
		tc.mode = m
		tc.name = string(m)
		mtcs = append(mtcs, tc)
	}
	modes, err := sweep(mtcs)
	if err != nil {
		return err
	}

	if o.jsonOut != "" && o.jsonOut != "-" {
		if err := os.WriteFile(o.jsonOut+".dict", dict, 0o644); err != nil {
			return err
		}
		var out []map[string]any
		for _, group := range [][]tuneResult{codecs, batches, modes} {
			for _, r := range group {
				out = append(out, map[string]any{
					"name": r.name, "codec": r.codec, "dictionary": r.dict, "max_batch_records": r.batch,
					"mode": string(r.mode), "rps": r.rps, "rps_spread": r.spread, "p99_ms": r.p99,
					"wire_bytes_per_write": r.wirePerWrite, "raw_bytes_per_write": r.rawPerWrite,
					"records_per_batch": r.recordsPerBtch,
				})
			}
		}
		b, err := json.MarshalIndent(map[string]any{"sample": o.sample, "clients": clients, "results": out}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	recommend(w, codecs, best, batches, batch, modes, o)
	return nil
}

// dictSamples is how many sample batches the dictionary is trained on.
const dictSamples = 400

// trainDictionary trains a zstd dictionary on batches shaped like the ones
// the tuning runs send: one to four delta records, each rewriting one
// attribute of the sample with its digits changed.
func trainDictionary(sample []loadgen.Attr) ([]byte, error) {
	var samples [][]byte
	now := time.Now()
	for i := range dictSamples {
		var recs []wire.Record
		for j := range 1 + i%4 {
			a := sample[(i*7+j)%len(sample)]
			v, err := core.JSONCodec{}.Marshal(loadgen.Vary(a.Value, int64(i*31+j)))
			if err != nil {
				return nil, err
			}
			recs = append(recs, wire.Record{Kind: wire.KindDelta, Change: &core.Change{
				ID: fmt.Sprintf("%024x", i*1000+j), Base: uint64(i), Version: uint64(i + 1),
				Set: []core.Attr{{Key: a.Key, Value: v}}, Created: now, Accessed: now,
			}})
		}
		samples = append(samples, wire.AppendBatch(nil, recs))
	}
	return compress.TrainDictionary(samples, compress.TrainOptions{})
}

// pickCodec returns the codec with the fewest wire bytes per write among
// those within the noise (10%, or the rounds' spread if larger) of the best
// throughput.
func pickCodec(rs []tuneResult) tuneResult {
	top := 0.0
	noise := 0.1
	for _, r := range rs {
		top = max(top, r.rps)
		noise = max(noise, r.spread)
	}
	var best tuneResult
	for _, r := range rs {
		if r.rps < (1-noise)*top {
			continue
		}
		if best.name == "" || r.wirePerWrite < best.wirePerWrite {
			best = r
		}
	}
	return best
}

// pickBatch returns the largest batch size whose throughput is within the
// noise (10%, or the rounds' spread if larger) of the best: a larger cap
// never forces smaller batches, amortizes the envelope and compresses
// better, so a smaller one must win clearly to be chosen.
func pickBatch(rs []tuneResult) tuneResult {
	top := 0.0
	noise := 0.1
	for _, r := range rs {
		top = max(top, r.rps)
		noise = max(noise, r.spread)
	}
	var best tuneResult
	for _, r := range rs {
		if r.rps >= (1-noise)*top && r.batch >= best.batch {
			best = r
		}
	}
	return best
}

// throughputDiff describes a's throughput against b's, or says the
// difference is within the rounds' spread.
func throughputDiff(a, b tuneResult) string {
	noise := max(a.spread, b.spread, 0.05)
	d := pct(a.rps, b.rps)
	if abs(d) <= 100*noise {
		return fmt.Sprintf("the same throughput within the noise (%+.0f%%, rounds spread ±%.0f%%)", d, 50*max(a.spread, b.spread))
	}
	return fmt.Sprintf("%+.0f%% throughput", d)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * (a/b - 1)
}

func recommend(w io.Writer, codecs []tuneResult, best tuneResult, batches []tuneResult, batch tuneResult, modes []tuneResult, o options) {
	fmt.Fprintln(w, "\nrecommendation:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	var def tuneResult
	for _, r := range codecs {
		if r.codec == buddy.DefaultCodec && !r.dict {
			def = r
		}
	}
	reason := fmt.Sprintf("%.0f wire B/write, %+.0f%% vs the default %s, at %s",
		best.wirePerWrite, pct(best.wirePerWrite, def.wirePerWrite), buddy.DefaultCodec, throughputDiff(best, def))
	if best.codec == def.codec && best.dict == def.dict {
		reason = fmt.Sprintf("%.0f wire B/write; no codec with a throughput within the noise of the best sends fewer bytes", best.wirePerWrite)
	}
	fmt.Fprintf(tw, "  codec\t%s\t%s\n", best.name, reason)
	var one tuneResult
	for _, r := range batches {
		if r.batch == 1 {
			one = r
		}
	}
	fmt.Fprintf(tw, "  MaxBatchRecords\t%d\t%.1f records/batch at %d clients (the cap is rarely reached); %.0f wire B/write vs %.0f unbatched (MaxBatchRecords 1), at %s vs unbatched\n",
		batch.batch, batch.recordsPerBtch, min(o.clients, 64), batch.wirePerWrite, one.wirePerWrite, throughputDiff(batch, one))
	syncR, asyncR := modes[0], modes[1]
	fmt.Fprintf(tw, "  Mode\tSync\tno acknowledged write is lost when a node dies; costs %.0f%% throughput and %+.2f ms p99 vs Async here (Async: %.0f req/s, p99 %.2f ms)\n",
		-pct(syncR.rps, asyncR.rps), syncR.p99-asyncR.p99, asyncR.rps, asyncR.p99)
	tw.Flush()

	fmt.Fprintln(w, "\n  buddy.Config{")
	fmt.Fprintln(w, "  \tMode:            buddy.Sync, // buddy.Async only if losing the last queued writes of a crashed node is acceptable")
	fmt.Fprintf(w, "  \tMaxBatchRecords: %d,\n", batch.batch)
	fmt.Fprintln(w, "  \tCompression: compress.Config{")
	if best.dict {
		fmt.Fprintf(w, "  \t\tCodec:        %q,\n", best.codec)
	} else {
		fmt.Fprintf(w, "  \t\tCodec: %q,\n", best.codec)
	}
	if best.dict {
		where := "the dictionary trained on your sample (pass -json FILE to save it as FILE.dict)"
		if o.jsonOut != "" && o.jsonOut != "-" {
			where = o.jsonOut + ".dict"
		}
		fmt.Fprintf(w, "  \t\tDictionaries: reg, // reg.Add(%d, dict); reg.SetActive(%d) on every node; dict = %s\n", dictID, dictID, where)
		fmt.Fprintln(w, "  \t\tMinSize:      1,   // small deltas shrink with a dictionary")
	}
	fmt.Fprintln(w, "  \t},")
	fmt.Fprintln(w, "  }")
	fmt.Fprintln(w, "\n  Figures come from short runs on this machine; rerun with a longer -tune-duration before relying on differences under 10%.")
}
