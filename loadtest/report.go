package main

import (
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/report"
	"github.com/pixelflow/pixelflow/internal/harness/svgplot"
)

// Report is a load test's result.
type Report struct {
	Params  Params          `json:"params"`
	Target  string          `json:"target"`
	Machine string          `json:"machine"`
	Commit  string          `json:"commit"` // the source that ran (report.Commit)
	Started time.Time       `json:"started"`
	Steps   []StepResult    `json:"steps"`
	Series  []Second        `json:"series"`
	History *history.Report `json:"history"`
	// Latency per stage: delivery (commit → client), http (write scheduled
	// → 201), publish (commit → relay XADD), fanout (XADD → client).
	Latency map[string]Quantiles `json:"latency"`
	// CDF of delivery latency: (ms, percentile) points.
	CDF [][2]float64 `json:"cdf"`
	// Percentiles of delivery latency, HDR style: (1/(1-q), ms) points,
	// so the tail (99 %, 99.9 %, 99.99 %) gets as much room as the body.
	Percentiles [][2]float64 `json:"percentiles"`
	// Regions: the regions scenario's deliveries per region.
	Regions *RegionsResult `json:"regions,omitempty"`
}

// StepResult is one rate step (the only one unless capacity).
type StepResult struct {
	Rate     int        `json:"rate"`
	Sent     int        `json:"sent"`
	Shed     int        `json:"shed"` // due while max-inflight writes were busy
	Achieved float64    `json:"achievedPerSec"`
	Delivery *Quantiles `json:"delivery,omitempty"`
	// Usage is the step's CPU per process and delivery, and its wire cost,
	// over the step after its warm-up.
	Usage *Usage `json:"usage,omitempty"`
}

// Quantiles of one histogram, in milliseconds.
type Quantiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func quantiles(h *hdrhistogram.Histogram) Quantiles {
	return Quantiles{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
}

// percentileSpectrum samples h at the percentiles of an HDR percentile
// plot: ten steps per decade of 1/(1-q), from the median to the last one
// the sample count can tell apart from the maximum.
func percentileSpectrum(h *hdrhistogram.Histogram) [][2]float64 {
	if h.TotalCount() == 0 {
		return nil
	}
	var out [][2]float64
	for x := 2.0; x <= float64(h.TotalCount()); x *= math.Pow(10, 0.1) {
		q := 100 * (1 - 1/x)
		out = append(out, [2]float64{x, ms(h.ValueAtQuantile(q))})
	}
	return out
}

// percentileTick names a tick 1/(1-q) of a percentile plot as its
// percentile: 10 → 90%, 1000 → 99.9%.
func percentileTick(x float64) string {
	return strconv.FormatFloat(100*(1-1/x), 'g', 6, 64) + "%"
}

// stageNames are the latency stages in report order.
var stageNames = []string{"delivery", "sent", "http", "publish", "fanout"}

// finish fills the figures from the meter.
func (r *Report) finish(m *meter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.Latency = map[string]Quantiles{
		"delivery": quantiles(m.delivery),
		"http":     quantiles(m.http),
		"publish":  quantiles(m.toPublish),
		"fanout":   quantiles(m.toClient),
		"sent":     quantiles(m.fromSend),
	}
	for _, b := range m.delivery.CumulativeDistribution() {
		if b.Count > 0 {
			r.CDF = append(r.CDF, [2]float64{ms(b.ValueAt), b.Quantile})
		}
	}
	r.Percentiles = percentileSpectrum(m.delivery)
	for i := range r.Steps {
		if i < len(m.stepHists) {
			q := quantiles(m.stepHists[i])
			r.Steps[i].Delivery = &q
		}
	}
}

// LastGoodRate is capacity's answer: the highest step whose P99 stayed
// within the limit, whose rate was reached and in which nothing was lost.
func (r *Report) LastGoodRate() int {
	if lost := r.lost(); lost > 0 {
		return 0
	}
	good := 0
	for _, s := range r.Steps {
		if s.Delivery == nil || s.Delivery.P99 > float64(r.Params.P99Limit.Microseconds())/1000 || s.Achieved < 0.9*float64(s.Rate) {
			break
		}
		good = s.Rate
	}
	return good
}

func (r *Report) lost() int {
	if r.History == nil {
		return 0
	}
	_, lost, _, _ := r.History.Totals()
	return lost
}

func (r *Report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tP50\tP90\tP99\tP99.9\tmax\t")
	for _, k := range stageNames {
		q := r.Latency[k]
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", k, q.Count, q.P50, q.P90, q.P99, q.P999, q.Max)
	}
	tw.Flush()
	for _, s := range r.Steps {
		p99 := 0.0
		if s.Delivery != nil {
			p99 = s.Delivery.P99
		}
		fmt.Fprintf(w, "rate %d/s: sent %d, shed %d, achieved %.0f/s, delivery P99 %.1f ms\n", s.Rate, s.Sent, s.Shed, s.Achieved, p99)
		if s.Usage != nil {
			fmt.Fprintf(w, "  %s\n", s.Usage.line())
		}
	}
	if r.Regions != nil {
		r.Regions.print(w)
	}
	if r.Params.Steps != nil {
		fmt.Fprintf(w, "capacity: last good rate %d writes/s (P99 ≤ %s, nothing lost)\n", r.LastGoodRate(), r.Params.P99Limit)
	}
}

// Write saves report.json and report.html in dir.
func (r *Report) Write(dir string) error {
	return report.Write(dir, r, reportPage(), r.view())
}

type reportView struct {
	*Report
	Stages            []stageRow
	CDFPlot, RatePlot template.HTML
	P99Plot           template.HTML
	RegionsPlot       template.HTML
	Events            int
	Lost, Unexpected  int
	Duplicated        int
	Capacity          int
}

type stageRow struct {
	Name, Doc string
	Q         Quantiles
}

func (r *Report) view() reportView {
	v := reportView{Report: r}
	docs := map[string]string{
		"delivery": "commit → client receive (what a user sees)",
		"sent":     "write sent → client receive (the side-by-side harness's latency)",
		"http":     "write scheduled → 201 (open loop: queueing counts)",
		"publish":  "commit → relay XADD",
		"fanout":   "relay XADD → client receive (gateway read + WebSocket)",
	}
	for _, k := range stageNames {
		v.Stages = append(v.Stages, stageRow{k, docs[k], r.Latency[k]})
	}
	if r.History != nil {
		v.Events, v.Lost, v.Unexpected, v.Duplicated = r.History.Totals()
	}
	if r.Params.Steps != nil {
		v.Capacity = r.LastGoodRate()
	}
	if r.Regions != nil {
		v.RegionsPlot = r.Regions.plot()
	}
	v.CDFPlot = template.HTML(svgplot.Chart{Title: "delivery latency CDF", XLabel: "commit → receive (ms, log scale)", YLabel: "percentile",
		LogX: true, Series: []svgplot.Series{{Name: "delivery", Color: "#1f77b4", Points: r.CDF}}}.SVG() +
		"<br>" + svgplot.Chart{Title: "delivery latency by percentile (HDR plot)", XLabel: "percentile (log scale of 1/(1−q): the tail gets the room)", YLabel: "ms (log scale)",
		LogX: true, LogY: true, XTick: percentileTick, Series: []svgplot.Series{{Name: "delivery", Color: "#ff7f0e", Points: r.Percentiles}}}.SVG())
	var writes, delivered, p99 [][2]float64
	for _, s := range r.Series {
		writes = append(writes, [2]float64{s.T, s.Writes})
		delivered = append(delivered, [2]float64{s.T, s.Delivered})
		p99 = append(p99, [2]float64{s.T, s.P99})
	}
	v.RatePlot = template.HTML(svgplot.Chart{Title: "deliveries per second", XLabel: "seconds", Series: []svgplot.Series{{Name: "deliveries/s", Color: "#2ca02c", Points: delivered}}}.SVG() +
		"<br>" + svgplot.Chart{Title: "acknowledged writes per second", XLabel: "seconds", Series: []svgplot.Series{{Name: "writes/s", Color: "#1f77b4", Points: writes}}}.SVG())
	v.P99Plot = template.HTML(svgplot.Chart{Title: "delivery P99 per second", XLabel: "seconds", YLabel: "ms (log scale)", LogY: true, Series: []svgplot.Series{{Name: "P99", Color: "#9467bd", Points: p99}}}.SVG())
	return v
}

func reportPage() *template.Template {
	return template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pixelflow load test</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0 24px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.bad { background: #f8c9c4; font-weight: bold; } .good { background: #d9f2d9; }
</style></head><body>
<h1>pixelflow load test — {{.Params.Scenario}}</h1>
<p>{{.Started.Format "2006-01-02 15:04:05 MST"}} on {{.Machine}}, commit {{.Commit}}. Target: {{.Target}}.<br>
{{.Params.Clients}} clients, {{.Params.Rate}} writes/s{{if .Params.Steps}} rising by steps {{.Params.Steps}} of {{.Params.StepTime}}{{else}} for {{.Params.Duration}}{{end}}, pixels in a {{.Params.Region}}² region, open-loop writes (at most {{.Params.InFlight}} in flight).</p>
<table><tr><th>history checker</th><th>acknowledged</th><th>unknown</th><th>events delivered</th><th>lost</th><th>unexpected</th><th>duplicated</th></tr>
<tr><td>{{if or .Lost .Unexpected}}<b>FAIL</b>{{else}}clean{{end}}</td><td>{{.History.Writes.OK}}</td><td>{{.History.Writes.Unknown}}</td><td>{{.Events}}</td>
<td class="{{if .Lost}}bad{{else}}good{{end}}">{{.Lost}}</td><td class="{{if .Unexpected}}bad{{else}}good{{end}}">{{.Unexpected}}</td><td>{{.Duplicated}}</td></tr></table>
{{if .Params.Steps}}<p><b>Capacity: last good rate {{.Capacity}} writes/s</b> (P99 ≤ {{.Params.P99Limit}}, rate reached, nothing lost).</p>{{end}}
<table><tr><th>latency (ms)</th><th>what</th><th>count</th><th>P50</th><th>P90</th><th>P99</th><th>P99.9</th><th>max</th></tr>
{{range .Stages}}<tr><td>{{.Name}}</td><td>{{.Doc}}</td><td>{{.Q.Count}}</td><td>{{printf "%.2f" .Q.P50}}</td><td>{{printf "%.2f" .Q.P90}}</td><td>{{printf "%.2f" .Q.P99}}</td><td>{{printf "%.2f" .Q.P999}}</td><td>{{printf "%.2f" .Q.Max}}</td></tr>{{end}}</table>
<table><tr><th>rate step</th><th>sent</th><th>shed</th><th>achieved/s</th><th>delivery P50</th><th>P99</th></tr>
{{range .Steps}}<tr><td>{{.Rate}}/s</td><td>{{.Sent}}</td><td>{{.Shed}}</td><td>{{printf "%.0f" .Achieved}}</td><td>{{with .Delivery}}{{printf "%.2f" .P50}}</td><td>{{printf "%.2f" .P99}}{{end}}</td></tr>{{end}}</table>
<table><tr><th>rate step</th><th>window s</th><th>deliveries/s</th><th>CPU µs per delivery (cores) by process</th><th>server µs/delivery</th><th>frames/delivery</th><th>bytes/delivery</th><th>machine busy</th><th>other processes (cores)</th><th>disturbed</th></tr>
{{range .Steps}}{{$rate := .Rate}}{{with .Usage}}<tr><td>{{$rate}}/s</td><td>{{printf "%.1f" .WindowS}}</td><td>{{printf "%.0f" .DeliveriesPerSec}}</td><td>{{range .Groups}}{{.Name}}: {{printf "%.2f" .UsPerDelivery}} ({{printf "%.2f" .Cores}})<br>{{end}}</td><td>{{printf "%.2f" .Server.UsPerDelivery}}</td><td>{{printf "%.3f" .FramesPerDelivery}}</td><td>{{printf "%.0f" .BytesPerDelivery}}</td><td>{{printf "%.0f%%" .BusyPct}}</td><td>{{printf "%.2f" .Other}}</td><td class="{{if .Disturbed}}bad{{else}}good{{end}}">{{if .Disturbed}}yes{{else}}no{{end}}</td></tr>{{end}}{{end}}</table>
{{with .Regions}}<h2>Regions</h2>
<p>Each client views {{.View}}×{{.View}} regions of 64 pixels placed at random on the {{.PerRow}}×{{.PerRow}} regions; writes land anywhere.
Deliveries {{.Deliveries}}, viewers × acknowledged writes {{.Expected}};
<span class="{{if .Outside}}bad{{else}}good{{end}}">delivered outside a client's regions: {{.Outside}}</span>. Server CPU per delivery: the usage table above.</p>{{end}}
{{.RegionsPlot}}
{{.CDFPlot}}<br>{{.P99Plot}}<br>{{.RatePlot}}
<p style="color:#666;max-width:760px">Clients spoke {{.Params.Wire}}. Latency is the client's receive time minus the event's committedAt (with -wire json or binary, which carry no commit time: minus the write's send time), both read from this host's clock on loopback. Across hosts the clocks' offset adds to every figure. The load generator runs on the same machine as pixelflow, so it competes with what it measures (pin them apart with -cpus-server and -cpus-load); CPU figures come from /proc after each step's warm-up, and a step where other processes used more than {{.Params.MaxOther}} cores is flagged disturbed.</p>
</body></html>
`))
}

// machine describes the host: cores and memory.
func machine() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				var kb int64
				if _, err := fmt.Sscan(f[1], &kb); err == nil {
					mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	return fmt.Sprintf("%d cores%s, %s/%s, %s", runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// quietLogger keeps the clients' reconnect chatter out of the progress
// lines; errors still show.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
