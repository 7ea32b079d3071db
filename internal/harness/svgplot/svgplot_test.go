package svgplot

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestChartIsWellFormedSVG(t *testing.T) {
	for _, c := range []Chart{
		{Title: "rate <&>", XLabel: "s", YLabel: "events/s", Shade: [][2]float64{{1, 2}},
			Series: []Series{{Name: "a", Color: "#000", Points: [][2]float64{{0, 1}, {1, 1500}, {3, 20}}}, {Name: "b", Color: "#f00", Points: [][2]float64{{0, 2}}}}},
		{Title: "cdf", LogX: true, Series: []Series{{Name: "p", Color: "#00f", Points: [][2]float64{{0, 0}, {0.5, 10}, {12, 99}, {300, 100}}}}},
		{Title: "empty"},
	} {
		svg := c.SVG()
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			if _, err := d.Token(); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%s: not well-formed: %v\n%s", c.Title, err, svg)
				}
				break
			}
		}
		if n := strings.Count(svg, "<polyline"); n != len(c.Series) {
			t.Errorf("%s: %d lines, want %d", c.Title, n, len(c.Series))
		}
	}
}

func TestTicks(t *testing.T) {
	if got := niceCeil(1234); got != 2000 {
		t.Errorf("niceCeil(1234) = %v", got)
	}
	if got := xticks(0.5, 300, true); len(got) != 3 || got[0] != 1 || got[2] != 100 {
		t.Errorf("log ticks = %v", got)
	}
	if got := short(1500); got != "1.5k" {
		t.Errorf("short(1500) = %s", got)
	}
}

// On a log y axis a baseline of 2–4 ms keeps most of the height beside a
// spike of 5 s; on a linear one it is squeezed into the bottom pixel.
func TestLogYKeepsTheBaselineVisible(t *testing.T) {
	sc := logY(2, 5000)
	if len(sc.ticks) == 0 || sc.ticks[0] != 1 || sc.ticks[len(sc.ticks)-1] != 10000 {
		t.Fatalf("log ticks %v, want 1 … 10000", sc.ticks)
	}
	if f := sc.frac(3); f < 0.1 {
		t.Errorf("3 ms sits at %.3f of the height under a 5 s spike, want ≥ 0.1", f)
	}
	if f := linearY(5000).frac(3); f > 0.001 {
		t.Errorf("linear: 3 ms at %.4f (the case the log axis exists for)", f)
	}
	if sc.frac(0) != 0 || sc.frac(10000) != 1 {
		t.Errorf("ends: %v %v", sc.frac(0), sc.frac(10000))
	}
	if svg := (Chart{LogY: true, Series: []Series{{Name: "p99", Color: "#000", Points: [][2]float64{{0, 0}, {1, 3}, {2, 5000}}}}}).SVG(); !strings.Contains(svg, ">10k<") {
		t.Errorf("log chart lacks its 10k tick:\n%s", svg)
	}
}
