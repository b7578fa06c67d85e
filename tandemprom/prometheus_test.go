//go:build unix

package tandemprom_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tandemsession/tandem/tandemprom"
)

// envPrometheus enables TestDashboardOnPrometheus; .ci/run sets it after
// installing Debian's prometheus.
const envPrometheus = "TANDEM_PROMETHEUS_TESTS"

// The Grafana dashboard's queries, run by a real Prometheus that scrapes
// the collectors of a real node pair under load: every query parses and
// runs, and the panels that must show something do.
func TestDashboardOnPrometheus(t *testing.T) {
	if os.Getenv(envPrometheus) == "" {
		t.Skipf("set %s=1 to run it (needs the prometheus binary; .ci/run installs it)", envPrometheus)
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("%s=1 but prometheus is not installed: %v", envPrometheus, err)
	}
	n1, n2 := startPair(t)
	var targets []string
	for _, p := range []pairNode{n1, n2} {
		c, err := tandemprom.New(tandemprom.Options{Manager: p.mgr, Node: p.node})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		targets = append(targets, strings.TrimPrefix(srv.URL, "http://"))
	}
	// Writes on n1 while Prometheus scrapes: new sessions, one every 20 ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Go(func() {
		for writeErr == nil {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				writeErr = write(n1.mgr, "")
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		if writeErr != nil {
			t.Error(writeErr)
		}
	}()

	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tandem\n    static_configs:\n      - targets: [%s]\n",
		strings.Join(quoted(targets), ", "))
	must(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644))
	addr := freeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	must(t, err)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})

	api := "http://" + addr
	query := func(q string) (prom, error) {
		var r prom
		resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return r, err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return r, err
		}
		if r.Status != "success" {
			return r, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
		}
		return r, nil
	}
	// Until rates have data: a few scrapes of both targets.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for {
		r, err := query(`sum(rate(tandem_commits_total[30s])) > 0 and sum(rate(tandem_replication_acks_total[30s])) > 0 and count(count_over_time(up[1m]) >= 4) == 2`)
		if err == nil && len(r.Data.Result) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus on %s has no rates: %v %+v", addr, err, r)
		case <-done:
			t.Fatal("prometheus exited")
		case <-time.After(250 * time.Millisecond):
		}
	}

	// Grafana's variables as Grafana would expand them.
	expand := strings.NewReplacer(`$instance`, `.*`, `$__rate_interval`, `30s`)
	// The panels that must show data with one busy node and its buddy.
	wantData := map[string]bool{
		"tandem_sessions":                         true,
		"rate(tandem_commits_total":               true,
		"tandem_backups":                          true,
		"rate(tandem_replication_acks_total":      true,
		"tandem_replication_latency_seconds":      true,
		"rate(tandem_replication_raw_bytes_total": true,
		"tandem_peer_state":                       true,
	}
	shown := 0
	for _, e := range dashboardExprs(t) {
		r, err := query(expand.Replace(e))
		if err != nil {
			t.Errorf("%s: %v", e, err)
			continue
		}
		for key := range wantData {
			if !strings.Contains(e, key) {
				continue
			}
			if !r.hasValue() {
				t.Errorf("%s: no data", e)
			}
			shown++
		}
	}
	if shown < len(wantData) {
		t.Errorf("only %d of the %d expected panels found", shown, len(wantData))
	}
	if r, err := query(`histogram_quantile(0.99, sum by (le) (rate(tandem_replication_latency_seconds_bucket[30s])))`); err == nil && r.hasValue() {
		t.Logf("p99 replication latency on loopback, as the dashboard shows it: %s s", r.Data.Result[0].Value[1])
	}
}

// prom is the answer of /api/v1/query.
type prom struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// hasValue reports whether the answer holds a number (not NaN).
func (p prom) hasValue() bool {
	for _, r := range p.Data.Result {
		if s, ok := r.Value[1].(string); ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil && v == v {
				return true
			}
		}
	}
	return false
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
