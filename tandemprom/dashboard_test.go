package tandemprom_test

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboardExprs returns the PromQL of every panel of the Grafana
// dashboard in examples/grafana.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../examples/grafana/tandem.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var dash struct {
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("tandem.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	if dash.UID == "" || len(exprs) < 10 {
		t.Fatalf("dashboard uid %q, %d queries", dash.UID, len(exprs))
	}
	return exprs
}

// exported reads the metric names and types of the golden exposition.
func exported(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/exposition.prom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	types := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	return types
}

// Every metric the dashboard queries is one the collector exports (with
// _bucket on histograms only), and it groups only by labels that exist.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	types := exported(t)
	names := regexp.MustCompile(`\btandem_[a-z_]+`)
	by := regexp.MustCompile(`by \(([a-z_, ]+)\)`)
	labels := map[string]bool{"instance": true, "le": true, "reason": true, "outcome": true, "state": true, "peer": true}
	seen := map[string]bool{}
	for _, e := range dashboardExprs(t) {
		for _, n := range names.FindAllString(e, -1) {
			base, isBucket := strings.CutSuffix(n, "_bucket")
			switch {
			case isBucket && types[base] == "histogram":
			case types[n] != "" && types[n] != "histogram":
			default:
				t.Errorf("%s: %s is not exported (as used)", e, n)
			}
			seen[base] = true
		}
		for _, m := range by.FindAllStringSubmatch(e, -1) {
			for l := range strings.SplitSeq(m[1], ",") {
				if !labels[strings.TrimSpace(l)] {
					t.Errorf("%s: groups by unknown label %q", e, l)
				}
			}
		}
		if strings.Count(e, "(") != strings.Count(e, ")") {
			t.Errorf("%s: unbalanced parentheses", e)
		}
	}
	for _, must := range []string{"tandem_sessions", "tandem_commits_total", "tandem_replication_acks_total", "tandem_replication_latency_seconds",
		"tandem_replication_degraded_commits_total", "tandem_failovers_total", "tandem_unavailable_total", "tandem_replication_rejected_total"} {
		if !seen[must] {
			t.Errorf("the dashboard does not show %s", must)
		}
	}
}
