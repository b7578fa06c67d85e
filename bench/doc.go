// Package bench holds Tandem's benchmarks that need a running cluster: the
// replication benchmark (replication off, buddy Sync and buddy Async, in one
// process on loopback) and the wire-size benchmark (bytes per write of a
// delta versus a whole session). The load driver is bench/load, the report
// and chart generator bench/report, the peer session libraries bench/peers.
// See bench/README.md for the figures.
package bench
