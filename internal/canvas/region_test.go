package canvas

import (
	"slices"
	"strings"
	"testing"
)

func TestRegionOfAndBounds(t *testing.T) {
	s := Size{Width: 1000, Height: 1000}
	for _, c := range []struct {
		gx, gy int
		want   Region
	}{{0, 0, 0}, {63, 63, 0}, {64, 0, 1}, {0, 64, 64}, {999, 999, 15*64 + 15}, {130, 5, 2}} {
		r := RegionOf(c.gx, c.gy)
		if r != c.want {
			t.Errorf("RegionOf(%d,%d) = %d, want %d", c.gx, c.gy, r, c.want)
		}
		x0, y0, x1, y1 := r.Bounds(s)
		if c.gx < x0 || c.gx >= x1 || c.gy < y0 || c.gy >= y1 {
			t.Errorf("region %d bounds %d,%d..%d,%d miss pixel %d,%d", r, x0, y0, x1, y1, c.gx, c.gy)
		}
	}
	if _, _, x1, y1 := Region(15*64 + 15).Bounds(s); x1 != 1000 || y1 != 1000 {
		t.Errorf("last region not clipped to the canvas: %d,%d", x1, y1)
	}
	if got := s.Regions(); got != 256 {
		t.Errorf("1000x1000 has %d regions, want 256", got)
	}
	if s.HasRegion(16) || s.HasRegion(16*64) || !s.HasRegion(15) {
		t.Error("HasRegion disagrees with the 16x16 grid of a 1000x1000 canvas")
	}
}

func TestParseRegions(t *testing.T) {
	s := Size{Width: 256, Height: 256}
	got, err := ParseRegions(s, "65,0,3")
	if err != nil || !slices.Equal(got, []Region{0, 3, 65}) {
		t.Fatalf("ParseRegions = %v, %v", got, err)
	}
	if got, err := ParseRegions(s, ""); err != nil || got != nil {
		t.Fatalf("empty list = %v, %v, want none", got, err)
	}
	for list, want := range map[string]string{
		"4":     "outside",
		"64,64": "twice",
		"x":     "not a region id",
		"-1":    "not a region id",
		"01":    "not a region id",
		"1,,2":  "not a region id",
		"70000": "not a region id",
	} {
		if _, err := ParseRegions(s, list); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRegions(%q) = %v, want an error about %q", list, err, want)
		}
	}
	many := strings.Repeat("0,", MaxRegions) + "0"
	if _, err := ParseRegions(Size{Width: MaxSide, Height: MaxSide}, many); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too many regions: %v", err)
	}
}
