package chart

import (
	"encoding/xml"
	"strings"
	"testing"
)

// wellFormed fails unless b is one well-formed XML document.
func wellFormed(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(b)))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return
			}
			t.Fatalf("not well-formed: %v\n%s", err, b)
		}
	}
}

func TestCharts(t *testing.T) {
	wellFormed(t, Bars("a <title> & more", "sub", []BarPanel{
		{Title: "req/s", Bars: []Bar{{Label: "x & y", Value: 10}, {Label: "z", Value: 0, Note: "<none>"}}},
		{Title: "p99", Bars: []Bar{{Label: "x", Value: 1.5, Color: Red}}},
	}))
	lc := LineChart{
		Title: "t", XTicks: []float64{1, 10, 100}, YTicks: []float64{1, 1000},
		XFormat: func(float64) string { return "x" }, YFormat: func(float64) string { return "y" },
		Series: []Series{{Name: "s", Color: Blue, X: []float64{1, 100}, Y: []float64{5, 0.1}, Labels: []string{"a", ""}}},
	}
	lc.Band.Y1, lc.Band.Y2, lc.Band.Label = 1, 200, "goal"
	wellFormed(t, lc.SVG())
	wellFormed(t, Timelines("t", "s", 100, []Timeline{
		{Title: "a", T: []float64{-100, 0, 100}, OK: []float64{5, 0, 7}, Fail: []float64{0, 3, 0}, Marker: "kill", Notes: "n"},
	}))
	if got := niceCeil(730); got != 1000 {
		t.Errorf("niceCeil(730) = %v", got)
	}
}
