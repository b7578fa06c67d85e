// Package chart draws the benchmark's charts as standalone SVG with the
// standard library only: horizontal bar panels, line charts with
// logarithmic axes, and stacked timelines of successes and failures.
package chart

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// Palette used by every chart.
const (
	Blue   = "#3566c8"
	Orange = "#e0822c"
	Green  = "#3f9b58"
	Red    = "#d0453a"
	Gray   = "#8a8f98"
	Purple = "#7a52b3"
	ink    = "#1d2433"
	grid   = "#e3e6ec"
	font   = `font-family="system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif"`
)

// Canvas accumulates SVG elements.
type Canvas struct {
	W, H int
	b    strings.Builder
}

// NewCanvas returns an empty canvas of the given size.
func NewCanvas(w, h int) *Canvas { return &Canvas{W: w, H: h} }

func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// Rect draws a filled rectangle.
func (c *Canvas) Rect(x, y, w, h float64, fill string) {
	fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>`+"\n", f(x), f(y), f(max(w, 0)), f(max(h, 0)), fill)
}

// Line draws a line.
func (c *Canvas) Line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	d := ""
	if dash != "" {
		d = ` stroke-dasharray="` + dash + `"`
	}
	fmt.Fprintf(&c.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"%s/>`+"\n", f(x1), f(y1), f(x2), f(y2), stroke, f(width), d)
}

// Text draws text; anchor is start, middle or end.
func (c *Canvas) Text(x, y float64, s string, size float64, anchor, fill string, bold bool) {
	w := ""
	if bold {
		w = ` font-weight="600"`
	}
	fmt.Fprintf(&c.b, `<text x="%s" y="%s" font-size="%s" text-anchor="%s" fill="%s"%s>%s</text>`+"\n", f(x), f(y), f(size), anchor, fill, w, html.EscapeString(s))
}

// Polyline draws connected points with markers.
func (c *Canvas) Polyline(xs, ys []float64, stroke string, dash string) {
	var pts []string
	for i := range xs {
		pts = append(pts, f(xs[i])+","+f(ys[i]))
	}
	d := ""
	if dash != "" {
		d = ` stroke-dasharray="` + dash + `"`
	}
	fmt.Fprintf(&c.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.2"%s/>`+"\n", strings.Join(pts, " "), stroke, d)
	for i := range xs {
		fmt.Fprintf(&c.b, `<circle cx="%s" cy="%s" r="3.5" fill="%s"/>`+"\n", f(xs[i]), f(ys[i]), stroke)
	}
}

// SVG returns the document.
func (c *Canvas) SVG() []byte {
	var out strings.Builder
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", c.W, c.H, c.W, c.H, font)
	fmt.Fprintf(&out, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", c.W, c.H)
	out.WriteString(c.b.String())
	out.WriteString("</svg>\n")
	return []byte(out.String())
}

// Bar is one bar of a panel.
type Bar struct {
	Label string
	Value float64
	Color string
	// Note is printed after the value.
	Note string
}

// BarPanel is a horizontal bar chart with a title.
type BarPanel struct {
	Title string
	// Format prints a value (default %.0f).
	Format func(float64) string
	Bars   []Bar
}

// Bars draws panels side by side, sharing the bar labels of the first
// panel, and returns the SVG. Each panel scales to its own maximum.
func Bars(title, subtitle string, panels []BarPanel) []byte {
	n := 0
	for _, p := range panels {
		n = max(n, len(p.Bars))
	}
	labelW, panelW, rowH, top := 300.0, 300.0, 26.0, 76.0
	w := int(labelW + float64(len(panels))*(panelW+30) + 20)
	h := int(top + float64(n)*rowH + 40)
	c := NewCanvas(w, h)
	c.Text(16, 26, title, 17, "start", ink, true)
	c.Text(16, 46, subtitle, 12, "start", Gray, false)
	for i, b := range panels[0].Bars {
		c.Text(labelW-10, top+float64(i)*rowH+rowH*0.65, b.Label, 13, "end", ink, false)
	}
	for pi, p := range panels {
		x0 := labelW + float64(pi)*(panelW+30)
		format := p.Format
		if format == nil {
			format = func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
		}
		c.Text(x0, top-10, p.Title, 13, "start", ink, true)
		top0 := 0.0
		for _, b := range p.Bars {
			top0 = max(top0, b.Value)
		}
		scale := (panelW - 90) / max(top0, 1e-9)
		c.Line(x0, top-4, x0, top+float64(n)*rowH, grid, 1, "")
		for i, b := range p.Bars {
			y := top + float64(i)*rowH + 4
			col := b.Color
			if col == "" {
				col = Blue
			}
			bw := b.Value * scale
			c.Rect(x0, y, bw, rowH-8, col)
			txt := format(b.Value)
			if b.Note != "" {
				txt += " " + b.Note
			}
			c.Text(x0+bw+5, y+rowH*0.55, txt, 12, "start", ink, false)
		}
	}
	return c.SVG()
}

// Series is one line of a line chart.
type Series struct {
	Name  string
	Color string
	Dash  string
	X, Y  []float64
	// Labels, when set, are printed next to the points.
	Labels []string
}

// LineChart is a line chart with logarithmic axes.
type LineChart struct {
	Title, Subtitle string
	XLabel, YLabel  string
	// XTicks and YTicks are the values with grid lines and labels.
	XTicks, YTicks []float64
	// TickFormat prints a tick value.
	XFormat, YFormat func(float64) string
	Series           []Series
	// Band, when its Y2 > Y1, shades the horizontal band between two Y
	// values (a goal), with its label.
	Band struct {
		Y1, Y2 float64
		Label  string
	}
}

// SVG draws the chart.
func (lc LineChart) SVG() []byte {
	w, h := 860.0, 440.0
	left, right, top, bottom := 80.0, 260.0, 70.0, 60.0
	c := NewCanvas(int(w), int(h))
	c.Text(16, 26, lc.Title, 17, "start", ink, true)
	c.Text(16, 46, lc.Subtitle, 12, "start", Gray, false)
	pw, ph := w-left-right, h-top-bottom
	xmin, xmax := lc.XTicks[0], lc.XTicks[len(lc.XTicks)-1]
	ymin, ymax := lc.YTicks[0], lc.YTicks[len(lc.YTicks)-1]
	X := func(v float64) float64 { return left + pw*(math.Log(v)-math.Log(xmin))/(math.Log(xmax)-math.Log(xmin)) }
	Y := func(v float64) float64 {
		v = min(max(v, ymin), ymax)
		return top + ph - ph*(math.Log(v)-math.Log(ymin))/(math.Log(ymax)-math.Log(ymin))
	}
	if lc.Band.Y2 > lc.Band.Y1 {
		c.Rect(left, Y(lc.Band.Y2), pw, Y(lc.Band.Y1)-Y(lc.Band.Y2), "#eaf5ec")
		c.Text(left+pw-6, Y(lc.Band.Y1)-6, lc.Band.Label, 11, "end", Green, false)
	}
	for _, t := range lc.XTicks {
		c.Line(X(t), top, X(t), top+ph, grid, 1, "")
		c.Text(X(t), top+ph+18, lc.XFormat(t), 12, "middle", ink, false)
	}
	for _, t := range lc.YTicks {
		c.Line(left, Y(t), left+pw, Y(t), grid, 1, "")
		c.Text(left-8, Y(t)+4, lc.YFormat(t), 12, "end", ink, false)
	}
	c.Text(left+pw/2, h-16, lc.XLabel, 12, "middle", ink, false)
	c.Text(16, top-12, lc.YLabel, 12, "start", ink, false)
	for si, s := range lc.Series {
		xs, ys := make([]float64, len(s.X)), make([]float64, len(s.Y))
		for i := range s.X {
			xs[i], ys[i] = X(s.X[i]), Y(s.Y[i])
		}
		c.Polyline(xs, ys, s.Color, s.Dash)
		for i, l := range s.Labels {
			if l != "" {
				c.Text(xs[i]+6, ys[i]-7, l, 11, "start", s.Color, false)
			}
		}
		ly := top + 10 + float64(si)*22
		c.Line(left+pw+16, ly, left+pw+40, ly, s.Color, 2.2, s.Dash)
		c.Text(left+pw+46, ly+4, s.Name, 12, "start", ink, false)
	}
	return c.SVG()
}

// Timeline is one panel of a failover chart: successes and failures per
// interval, and a marker.
type Timeline struct {
	Title string
	// T are the interval starts in ms relative to the marker; OK and Fail
	// the counts.
	T        []float64
	OK, Fail []float64
	Marker   string
	// Notes are printed under the title.
	Notes string
}

// Timelines draws the panels one above the other, on a shared time axis
// and a shared count scale, and returns the SVG.
func Timelines(title, subtitle string, bucketMs float64, panels []Timeline) []byte {
	w, panelH := 860.0, 150.0
	left, right, top := 70.0, 30.0, 70.0
	h := top + float64(len(panels))*(panelH+50) + 30
	c := NewCanvas(int(w), int(h))
	c.Text(16, 26, title, 17, "start", ink, true)
	c.Text(16, 46, subtitle, 12, "start", Gray, false)
	tmin, tmax, ymax := math.Inf(1), math.Inf(-1), 1.0
	for _, p := range panels {
		for i, t := range p.T {
			tmin, tmax = min(tmin, t), max(tmax, t+bucketMs)
			ymax = max(ymax, p.OK[i]+p.Fail[i])
		}
	}
	ymax = niceCeil(ymax)
	pw := w - left - right
	X := func(t float64) float64 { return left + pw*(t-tmin)/(tmax-tmin) }
	for pi, p := range panels {
		y0 := top + float64(pi)*(panelH+50) + 20
		c.Text(left, y0-8, p.Title, 13, "start", ink, true)
		if p.Notes != "" {
			c.Text(w-right, y0-8, p.Notes, 11, "end", Gray, false)
		}
		Y := func(v float64) float64 { return y0 + panelH - panelH*v/ymax }
		for _, frac := range []float64{0, 0.5, 1} {
			v := ymax * frac
			c.Line(left, Y(v), left+pw, Y(v), grid, 1, "")
			c.Text(left-6, Y(v)+4, strconv.FormatFloat(v, 'f', 0, 64), 11, "end", ink, false)
		}
		bw := pw * bucketMs / (tmax - tmin)
		for i, t := range p.T {
			x := X(t)
			c.Rect(x+0.5, Y(p.OK[i]), bw-1, Y(0)-Y(p.OK[i]), Green)
			c.Rect(x+0.5, Y(p.OK[i]+p.Fail[i]), bw-1, Y(p.OK[i])-Y(p.OK[i]+p.Fail[i]), Red)
		}
		if 0 >= tmin && 0 <= tmax {
			c.Line(X(0), y0-4, X(0), y0+panelH, ink, 1.5, "4,3")
			c.Text(X(0)+4, y0+10, p.Marker, 11, "start", ink, false)
		}
		for t := math.Ceil(tmin/1000) * 1000; t <= tmax; t += 1000 {
			c.Text(X(t), y0+panelH+15, strconv.FormatFloat(t/1000, 'f', 0, 64)+" s", 11, "middle", ink, false)
		}
	}
	ly := h - 14
	c.Rect(left, ly-9, 10, 10, Green)
	c.Text(left+14, ly, fmt.Sprintf("successful requests per %.0f ms", bucketMs), 12, "start", ink, false)
	c.Rect(left+260, ly-9, 10, 10, Red)
	c.Text(left+274, ly, "failed requests (errors, 5xx)", 12, "start", ink, false)
	return c.SVG()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
