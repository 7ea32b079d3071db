package main

import (
	"fmt"
	"html/template"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/svgplot"
)

// The regions scenario: every client views a square of View×View regions
// placed at random, so each region has about Clients·View²/regions
// viewers and gets its writes' share of the deliveries. What it shows is
// whether filtering holds: deliveries per region against viewers × writes
// there, the server's CPU per delivery, and nothing delivered outside a
// client's regions (the history checker's "outside").

// viewRegions is a random square of view×view regions of a side×side
// canvas.
func viewRegions(rng *rand.Rand, side, view int) []canvas.Region {
	n := (side + canvas.RegionSide - 1) / canvas.RegionSide // regions per row and column
	tx, ty := rng.IntN(n-view+1), rng.IntN(n-view+1)
	out := make([]canvas.Region, 0, view*view)
	for y := ty; y < ty+view; y++ {
		for x := tx; x < tx+view; x++ {
			out = append(out, canvas.Region(y*canvas.RegionStride+x))
		}
	}
	return out
}

// regionMeter counts viewers and deliveries per region.
type regionMeter struct {
	side       int
	viewers    [canvas.RegionStride * canvas.RegionStride]atomic.Int64
	deliveries [canvas.RegionStride * canvas.RegionStride]atomic.Int64
}

func (m *regionMeter) view(rs []canvas.Region) {
	for _, r := range rs {
		m.viewers[r].Add(1)
	}
}

func (m *regionMeter) observe(r client.Received) {
	if r.Event.Kind == canvas.KindCanary || r.Dup {
		return
	}
	m.deliveries[canvas.RegionOf(r.Event.GX, r.Event.GY)].Add(1)
}

// RegionsResult is the regions scenario's figures.
type RegionsResult struct {
	View       int         `json:"viewRegions"` // each client's square, in regions per side
	PerRow     int         `json:"regionsPerRow"`
	Rows       []RegionRow `json:"regions"` // row-major over the canvas's regions
	Deliveries int64       `json:"deliveries"`
	Expected   int64       `json:"expected"` // Σ viewers × acknowledged writes
	Outside    int         `json:"outside"`  // pixel events delivered outside a client's regions
}

// RegionRow is one region's figures.
type RegionRow struct {
	Region     canvas.Region `json:"region"`
	Viewers    int64         `json:"viewers"`
	Writes     int64         `json:"writes"` // acknowledged writes inside it
	Deliveries int64         `json:"deliveries"`
}

// result sums the meter against the writes.
func (m *regionMeter) result(view int, writes []history.Write, h *history.Report) *RegionsResult {
	size := canvas.Size{Width: m.side, Height: m.side}
	res := &RegionsResult{View: view, PerRow: (m.side + canvas.RegionSide - 1) / canvas.RegionSide}
	written := map[canvas.Region]int64{}
	for _, w := range writes {
		if w.Outcome == history.OK && size.Contains(w.GX, w.GY) {
			written[canvas.RegionOf(w.GX, w.GY)]++
		}
	}
	for y := range res.PerRow {
		for x := range res.PerRow {
			r := canvas.Region(y*canvas.RegionStride + x)
			row := RegionRow{Region: r, Viewers: m.viewers[r].Load(), Writes: written[r], Deliveries: m.deliveries[r].Load()}
			res.Rows = append(res.Rows, row)
			res.Deliveries += row.Deliveries
			res.Expected += row.Viewers * row.Writes
		}
	}
	if h != nil {
		for _, v := range h.Clients {
			res.Outside += v.Outside
		}
	}
	return res
}

func (r *RegionsResult) print(w io.Writer) {
	var vmin, vmax int64 = -1, 0
	for _, row := range r.Rows {
		if vmin < 0 || row.Viewers < vmin {
			vmin = row.Viewers
		}
		vmax = max(vmax, row.Viewers)
	}
	fmt.Fprintf(w, "regions: %d×%d regions, each client views %d×%d; viewers per region %d..%d; deliveries %d (viewers × writes: %d, %.1f%%); outside a client's regions %d\n",
		r.PerRow, r.PerRow, r.View, r.View, vmin, vmax, r.Deliveries, r.Expected, 100*ratioF(r.Deliveries, r.Expected), r.Outside)
}

func ratioF(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// plot draws deliveries and viewers × writes per region (row-major), and
// a grid of the canvas's regions shaded by deliveries.
func (r *RegionsResult) plot() template.HTML {
	var got, want [][2]float64
	var top int64
	for i, row := range r.Rows {
		got = append(got, [2]float64{float64(i), float64(row.Deliveries)})
		want = append(want, [2]float64{float64(i), float64(row.Viewers * row.Writes)})
		top = max(top, row.Deliveries)
	}
	chart := svgplot.Chart{Title: "deliveries per region", XLabel: "region (row-major over the canvas)", YLabel: "deliveries",
		Series: []svgplot.Series{{Name: "delivered", Color: "#2ca02c", Points: got}, {Name: "viewers × writes", Color: "#1f77b4", Points: want}}}.SVG()
	var b strings.Builder
	b.WriteString(`<table style="border-collapse:collapse"><caption>deliveries by region (canvas layout; id, viewers, deliveries)</caption>`)
	for y := range r.PerRow {
		b.WriteString("<tr>")
		for x := range r.PerRow {
			row := r.Rows[y*r.PerRow+x]
			shade := 255 - int(200*ratioF(row.Deliveries, max(top, 1)))
			fmt.Fprintf(&b, `<td style="background:rgb(%d,%d,255);font-size:10px;padding:2px" title="region %d: %d viewers, %d writes">%d<br>%d<br>%d</td>`,
				shade, shade, row.Region, row.Viewers, row.Writes, row.Region, row.Viewers, row.Deliveries)
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</table>")
	return template.HTML(chart + "<br>" + b.String())
}
