package chaos

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is a chaos run: one Result per scenario.
type Report struct {
	Profile string    `json:"profile"`
	When    time.Time `json:"when"`
	Results []*Result `json:"results"`
}

// Write saves report.json and report.html in dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report.json: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return fmt.Errorf("write report.html: %w", err)
	}
	defer f.Close()
	if err := page.Execute(f, r.view()); err != nil {
		return fmt.Errorf("render report.html: %w", err)
	}
	return f.Close()
}

type view struct {
	*Report
	Columns []string
	Rows    []row
}

type row struct {
	*Result
	Cells []cell
	Plot  template.HTML
}

type cell struct {
	Class, Text, Title string
}

// view lays out the resiliency matrix: scenario × invariant.
func (r *Report) view() view {
	v := view{Report: r}
	seen := map[string]bool{}
	for _, res := range r.Results {
		for _, inv := range res.Invariants {
			if !seen[inv.Name] {
				seen[inv.Name] = true
				v.Columns = append(v.Columns, inv.Name)
			}
		}
	}
	for _, res := range r.Results {
		rw := row{Result: res, Plot: template.HTML(timelineSVG(res))}
		for _, col := range v.Columns {
			c := cell{Class: "na", Text: "–"}
			if res.Status == "not run" {
				c.Title = res.Why
			}
			for _, inv := range res.Invariants {
				if inv.Name == col {
					c = cell{Class: "fail", Text: "FAIL", Title: inv.Figure}
					if inv.Pass {
						c.Class, c.Text = "pass", "pass"
					}
				}
			}
			rw.Cells = append(rw.Cells, c)
		}
		v.Rows = append(v.Rows, rw)
	}
	return v
}

// timelineSVG draws four stacked charts sharing the time axis: writes/s,
// delivered/s, outbox backlog and P99 latency, with the fault shaded.
func timelineSVG(res *Result) string {
	if len(res.Timeline) == 0 {
		return ""
	}
	const w, h, left, gap = 760.0, 70.0, 110.0, 14.0
	tmax := res.Timeline[len(res.Timeline)-1].T
	x := func(t float64) float64 { return left + (w-left-10)*t/math.Max(tmax, 1e-9) }
	series := []struct {
		name, unit, color string
		val               func(Point) float64
	}{
		{"writes/s", "", "#1f77b4", func(p Point) float64 { return p.Committed }},
		{"delivered/s", "", "#2ca02c", func(p Point) float64 { return p.Delivered }},
		{"outbox backlog", "", "#d62728", func(p Point) float64 { return math.Max(0, float64(p.Backlog)) }},
		{"P99 latency", " ms", "#9467bd", func(p Point) float64 { return p.P99 }},
	}
	total := float64(len(series))*(h+gap) + 24
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, w, total)
	fmt.Fprintf(&b, `<rect x="%.1f" y="0" width="%.1f" height="%.0f" fill="#f4c7c3" opacity="0.6"><title>fault %.1fs–%.1fs</title></rect>`,
		x(res.FaultStart), x(res.FaultEnd)-x(res.FaultStart), total-20, res.FaultStart, res.FaultEnd)
	for i, s := range series {
		top := float64(i) * (h + gap)
		peak := 0.0
		for _, p := range res.Timeline {
			peak = math.Max(peak, s.val(p))
		}
		scale := math.Max(peak, 1)
		var pts []string
		for _, p := range res.Timeline {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.T), top+h-h*s.val(p)/scale))
		}
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#999"/>`, left, top+h, w-10, top+h)
		fmt.Fprintf(&b, `<text x="4" y="%.1f" fill="%s">%s</text><text x="4" y="%.1f" fill="#666">max %.0f%s</text>`, top+h/2, s.color, s.name, top+h/2+14, peak, s.unit)
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.color, strings.Join(pts, " "))
	}
	for t := 0.0; t <= tmax; t += tickStep(tmax) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#666">%.0fs</text>`, x(t), total-6, t)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func tickStep(tmax float64) float64 {
	for _, s := range []float64{1, 2, 5, 10, 20, 30, 60} {
		if tmax/s <= 12 {
			return s
		}
	}
	return 120
}

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pixelflow chaos report</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0 28px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; }
th { background: #f2f2f2; }
td.pass { background: #d9f2d9; } td.fail { background: #f8c9c4; font-weight: bold; } td.na { color: #999; }
.status-pass { color: #197519; } .status-fail { color: #b3261e; } .status-not.run { color: #777; }
section { margin-bottom: 32px; } .doc { color: #555; max-width: 760px; }
</style></head><body>
<h1>pixelflow chaos report</h1>
<p>Profile <b>{{.Profile}}</b>, run {{.When.Format "2006-01-02 15:04:05 MST"}}. Hover a cell for its figure.</p>
<table><tr><th>scenario</th><th>status</th>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td><a href="#{{.Scenario}}">{{.Scenario}}</a></td><td>{{.Status}}</td>{{range .Cells}}<td class="{{.Class}}" title="{{.Title}}">{{.Text}}</td>{{end}}</tr>
{{end}}</table>
{{range .Rows}}<section id="{{.Scenario}}"><h2>{{.Scenario}} — {{.Status}}</h2><p class="doc">{{.Doc}}</p>
{{if .Why}}<p class="doc"><i>Not run: {{.Why}}</i></p>{{end}}
{{if .Provider}}<p class="doc">On {{.Provider}}.</p>{{end}}
{{if .Invariants}}<table><tr><th>invariant</th><th>result</th><th>figure</th></tr>
{{range .Invariants}}<tr><td>{{.Name}}</td><td class="{{if .Pass}}pass{{else}}fail{{end}}">{{if .Pass}}pass{{else}}FAIL{{end}}</td><td>{{.Figure}}</td></tr>{{end}}</table>
<table><tr><th>phase</th><th>writes/s</th><th>delivered/s</th><th>P50 ms</th><th>P99 ms</th><th>events</th></tr>
{{range .PhasesInOrder}}<tr><td>{{.Name}}</td><td>{{printf "%.0f" .WritesPerSec}}</td><td>{{printf "%.0f" .DeliveredPerSec}}</td><td>{{printf "%.1f" .P50Ms}}</td><td>{{printf "%.1f" .P99Ms}}</td><td>{{.Events}}</td></tr>{{end}}</table>{{end}}
{{.Plot}}
</section>{{end}}
</body></html>
`))
