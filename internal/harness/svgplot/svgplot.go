// Package svgplot draws the small line charts of pixelflow's reports (chaos
// timelines, load-test CDFs and time series) as self-contained SVG, so a
// report is one HTML file that opens anywhere with no script or library.
package svgplot

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// Series is one line.
type Series struct {
	Name   string
	Color  string
	Points [][2]float64 // x, y
}

// Chart is one plot with axes, ticks and a legend.
type Chart struct {
	Title          string
	XLabel, YLabel string
	Width, Height  int // pixels; default 720×200
	// LogX plots x on a log10 scale (latency CDFs); x must be > 0.
	LogX bool
	// LogY plots y on a log10 scale (latency over time: one spike of
	// seconds does not flatten a baseline of milliseconds into the axis).
	// Points with y <= 0 sit on the bottom axis.
	LogY   bool
	Series []Series
	// Shade are x ranges drawn as a band behind the lines (a fault window).
	Shade [][2]float64
	// XMax fixes the x range's end (0: the data's).
	XMax float64
	// XTick, when set, labels the x ticks (a percentile plot names 1/(1-q)
	// as the percentile); by default they read as numbers.
	XTick func(x float64) string
}

const (
	padLeft, padRight, padTop, padBottom = 64.0, 16.0, 26.0, 34.0
)

// SVG renders the chart.
func (c Chart) SVG() string {
	w, h := float64(c.Width), float64(c.Height)
	if w == 0 {
		w = 720
	}
	if h == 0 {
		h = 200
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if c.LogX && p[0] <= 0 {
				continue
			}
			xmin, xmax, ymax = math.Min(xmin, p[0]), math.Max(xmax, p[0]), math.Max(ymax, p[1])
			if p[1] > 0 {
				ymin = math.Min(ymin, p[1])
			}
		}
	}
	if c.XMax > 0 {
		xmax = c.XMax
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax = 0, 1
	}
	if !c.LogX {
		xmin = math.Min(xmin, 0)
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	ys := linearY(ymax)
	if c.LogY {
		ys = logY(ymin, ymax)
	}
	fx := func(x float64) float64 {
		if c.LogX {
			lo, hi := math.Log10(xmin), math.Log10(xmax)
			if hi <= lo {
				hi = lo + 1
			}
			return padLeft + (w-padLeft-padRight)*(math.Log10(math.Max(x, xmin))-lo)/(hi-lo)
		}
		return padLeft + (w-padLeft-padRight)*(x-xmin)/(xmax-xmin)
	}
	fy := func(y float64) float64 { return h - padBottom - (h-padTop-padBottom)*ys.frac(y) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, w, h)
	if c.Title != "" {
		fmt.Fprintf(&b, `<text x="%.0f" y="15" font-weight="bold">%s</text>`, padLeft, html.EscapeString(c.Title))
	}
	for _, sh := range c.Shade {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="#f4c7c3" opacity="0.6"/>`,
			fx(sh[0]), padTop, math.Max(0, fx(sh[1])-fx(sh[0])), h-padTop-padBottom)
	}
	// y grid and ticks
	for _, y := range ys.ticks {
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e5e5"/>`, padLeft, fy(y), w-padRight, fy(y))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" fill="#555">%s</text>`, padLeft-4, fy(y)+4, short(y))
	}
	// x ticks
	for _, x := range xticks(xmin, xmax, c.LogX) {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#999"/>`, fx(x), h-padBottom, fx(x), h-padBottom+4)
		label := short(x)
		if c.XTick != nil {
			label = c.XTick(x)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s</text>`, fx(x), h-padBottom+16, html.EscapeString(label))
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#666"/>`, padLeft, h-padBottom, w-padRight, h-padBottom)
	if c.XLabel != "" {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#333">%s</text>`, (padLeft+w-padRight)/2, h-4, html.EscapeString(c.XLabel))
	}
	if c.YLabel != "" {
		fmt.Fprintf(&b, `<text transform="translate(12,%.0f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`, (padTop+h-padBottom)/2, html.EscapeString(c.YLabel))
	}
	lx := w - padRight
	for i := len(c.Series) - 1; i >= 0; i-- {
		s := c.Series[i]
		var pts []string
		for _, p := range s.Points {
			if c.LogX && p[0] <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(p[0]), fy(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, s.Color, strings.Join(pts, " "))
		lx -= 7*float64(len(s.Name)) + 24
		fmt.Fprintf(&b, `<rect x="%.0f" y="8" width="12" height="3" fill="%s"/><text x="%.0f" y="14" fill="#333">%s</text>`, lx, s.Color, lx+16, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// yScale maps y values to 0..1 of the plot's height and names its ticks.
type yScale struct {
	frac  func(y float64) float64
	ticks []float64
}

// linearY is 0..ymax rounded up to a nice number, in quarters.
func linearY(ymax float64) yScale {
	top := niceCeil(ymax)
	sc := yScale{frac: func(y float64) float64 { return y / top }}
	for i := 0; i <= 4; i++ {
		sc.ticks = append(sc.ticks, top*float64(i)/4)
	}
	return sc
}

// logY spans whole decades around the positive values, ticked at 1, 2
// and 5 × each power of ten (powers alone beyond three decades).
func logY(ymin, ymax float64) yScale {
	if math.IsInf(ymin, 1) || ymax <= 0 {
		ymin, ymax = 1, 10
	}
	lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if hi <= lo {
		hi = lo + 1
	}
	sc := yScale{frac: func(y float64) float64 {
		if y <= 0 {
			return 0
		}
		return math.Max(0, (math.Log10(y)-lo)/(hi-lo))
	}}
	steps := []float64{1, 2, 5}
	if hi-lo > 3 {
		steps = steps[:1]
	}
	for e := lo; e <= hi; e++ {
		for _, m := range steps {
			if y := m * math.Pow(10, e); e < hi || m == 1 {
				sc.ticks = append(sc.ticks, y)
			}
		}
	}
	return sc
}

// niceCeil rounds v up to 1, 2 or 5 × a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func xticks(lo, hi float64, log bool) []float64 {
	var out []float64
	if log {
		for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
			if x := math.Pow(10, e); x >= lo && x <= hi {
				out = append(out, x)
			}
		}
		return out
	}
	step := niceCeil((hi - lo) / 8)
	for x := math.Ceil(lo/step) * step; x <= hi+1e-9; x += step {
		out = append(out, x)
	}
	return out
}

// short formats a tick label: 1500 → 1.5k, 0.25 → 0.25.
func short(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case math.Abs(v) >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
