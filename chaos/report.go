package chaos

import (
	"context"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/report"
	"github.com/pixelflow/pixelflow/internal/harness/svgplot"
)

// Report is a chaos run: one Result per scenario.
type Report struct {
	Profile string    `json:"profile"`
	When    time.Time `json:"when"`
	Commit  string    `json:"commit"` // the source that ran (report.Commit)
	Results []*Result `json:"results"`
}

// Write saves report.json and report.html in dir, naming the commit that
// ran unless the report already does.
func (r *Report) Write(dir string) error {
	if r.Commit == "" {
		r.Commit = report.Commit(context.Background())
	}
	return report.Write(dir, r, page, r.view())
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

// timelineSVG draws four charts sharing the time axis: writes/s,
// delivered/s, outbox backlog and P99 latency, with the fault shaded.
func timelineSVG(res *Result) string {
	if len(res.Timeline) == 0 {
		return ""
	}
	series := []struct {
		name, color string
		val         func(Point) float64
		logY        bool // latency: a fault's spike must not flatten the baseline
	}{
		{"writes/s", "#1f77b4", func(p Point) float64 { return p.Committed }, false},
		{"delivered/s", "#2ca02c", func(p Point) float64 { return p.Delivered }, false},
		{"outbox backlog", "#d62728", func(p Point) float64 { return math.Max(0, float64(p.Backlog)) }, false},
		{"P99 latency (ms, log scale)", "#9467bd", func(p Point) float64 { return p.P99 }, true},
	}
	var b strings.Builder
	for i, s := range series {
		pts := make([][2]float64, len(res.Timeline))
		for j, p := range res.Timeline {
			pts[j] = [2]float64{p.T, s.val(p)}
		}
		shade := [][2]float64{{res.FaultStart, res.FaultEnd}}
		if len(res.Windows) > 0 {
			shade = shade[:0]
			for _, w := range res.Windows {
				shade = append(shade, [2]float64{w.Start, w.End})
			}
		}
		c := svgplot.Chart{Height: 120, Series: []svgplot.Series{{Name: s.name, Color: s.color, Points: pts}}, Shade: shade, LogY: s.logY}
		if i == len(series)-1 {
			c.XLabel = "seconds since the drill started (fault shaded)"
		}
		b.WriteString(c.SVG())
		b.WriteString("<br>")
	}
	return b.String()
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
<p>Profile <b>{{.Profile}}</b>, run {{.When.Format "2006-01-02 15:04:05 MST"}} on commit {{.Commit}}. Hover a cell for its figure.</p>
<table><tr><th>scenario</th><th>status</th>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td><a href="#{{.Scenario}}">{{.Scenario}}</a></td><td>{{.Status}}</td>{{range .Cells}}<td class="{{.Class}}" title="{{.Title}}">{{.Text}}</td>{{end}}</tr>
{{end}}</table>
{{range .Rows}}<section id="{{.Scenario}}"><h2>{{.Scenario}} — {{.Status}}</h2><p class="doc">{{.Doc}}</p>
{{if .Why}}<p class="doc"><i>Not run: {{.Why}}</i></p>{{end}}
{{if .Provider}}<p class="doc">On {{.Provider}}.</p>{{end}}
{{if .Note}}<p class="doc"><b>{{.Note}}</b></p>{{end}}
{{if .RecoverySeconds}}<p class="doc">Time to recover: <b>{{printf "%.2f" .RecoverySeconds}} s</b>: the longest any client went without a pixel after the fault.</p>{{end}}
{{if .OtherCores}}<p class="doc">Other processes used {{printf "%.2f" (index .OtherCores "before")}} cores before the fault, {{printf "%.2f" (index .OtherCores "during")}} during it and {{printf "%.2f" (index .OtherCores "after")}} after it{{if .Disturbed}} — <b>disturbed</b>: performance figures of this run say more about the machine than about pixelflow{{end}}.</p>{{end}}
{{if .Invariants}}<table><tr><th>invariant</th><th>result</th><th>figure</th></tr>
{{range .Invariants}}<tr><td>{{.Name}}</td><td class="{{if .Pass}}pass{{else}}fail{{end}}">{{if .Pass}}pass{{else}}FAIL{{end}}</td><td>{{.Figure}}</td></tr>{{end}}</table>
<table><tr><th>phase</th><th>writes/s</th><th>delivered/s</th><th>P50 ms</th><th>P99 ms</th><th>events</th></tr>
{{range .PhasesInOrder}}<tr><td>{{.Name}}</td><td>{{printf "%.0f" .WritesPerSec}}</td><td>{{printf "%.0f" .DeliveredPerSec}}</td><td>{{printf "%.1f" .P50Ms}}</td><td>{{printf "%.1f" .P99Ms}}</td><td>{{.Events}}</td></tr>{{end}}</table>{{end}}
{{if .Schedule}}<p class="doc">Schedule: seed {{.Schedule.Seed}}, fault phase {{printf "%.1f" .Schedule.Duration}} s, at most {{.Schedule.MaxConcurrent}} faults at once{{if .Schedule.Failpoints}}, failpoints {{.Schedule.Failpoints}}{{end}}.</p>{{end}}
{{if .Windows}}<table><tr><th>fault</th><th>planned s</th><th>injected s</th><th>healing s</th><th>healed s</th><th>may bend</th><th>error</th></tr>
{{range .Windows}}<tr><td>{{.Fault}}</td><td>{{printf "%.2f" .Planned}}</td><td>{{printf "%.2f" .Start}}</td><td>{{printf "%.2f" .Healed}}</td><td>{{printf "%.2f" .End}}</td><td>{{range .Bends}}{{.}} {{end}}</td><td>{{.Error}}</td></tr>{{end}}</table>{{end}}
{{.Plot}}
</section>{{end}}
</body></html>
`))
