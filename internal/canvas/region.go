package canvas

import (
	"slices"
	"strconv"
	"strings"
)

// The canvas is cut into regions, squares of RegionSide pixels, so that a
// client showing part of it can receive only the events inside that part
// (docs/protocol.md, "Regions"). The row stride is the same for every
// canvas (RegionStride), so a region's id names the same pixels whatever
// the canvas's width: a client needs no size to compute it.
const (
	RegionSide   = 64
	RegionStride = MaxSide / RegionSide // regions per row of the largest canvas
	// MaxRegions is the most regions one connection or snapshot request
	// may name: beyond it a client asks for the whole canvas.
	MaxRegions = 256
)

// Region is a region's id: (gy/RegionSide)*RegionStride + gx/RegionSide.
type Region uint16

// RegionOf returns the region holding pixel (gx, gy) of a valid placement.
func RegionOf(gx, gy int) Region {
	return Region((gy/RegionSide)*RegionStride + gx/RegionSide)
}

// Bounds returns the region's pixels on a canvas of size s: x0 ≤ gx < x1,
// y0 ≤ gy < y1 (clipped to the canvas).
func (r Region) Bounds(s Size) (x0, y0, x1, y1 int) {
	x0, y0 = int(r)%RegionStride*RegionSide, int(r)/RegionStride*RegionSide
	return x0, y0, min(x0+RegionSide, s.Width), min(y0+RegionSide, s.Height)
}

// HasRegion reports whether r holds any pixel of a canvas of size s.
func (s Size) HasRegion(r Region) bool {
	x0, y0, _, _ := r.Bounds(s)
	return int(r) < RegionStride*RegionStride && x0 < s.Width && y0 < s.Height
}

// Regions is the number of regions of a canvas of size s.
func (s Size) Regions() int {
	return ((s.Width + RegionSide - 1) / RegionSide) * ((s.Height + RegionSide - 1) / RegionSide)
}

// ParseRegions reads a comma-separated list of region ids ("0,1,64"; ""
// is none) of a canvas of size s: each a decimal id of a region of the
// canvas, none twice, at most MaxRegions. The result is sorted.
func ParseRegions(s Size, list string) ([]Region, error) {
	if list == "" {
		return nil, nil
	}
	parts := strings.Split(list, ",")
	if len(parts) > MaxRegions {
		return nil, Errorf(EInvalid, "regions: %d named, at most %d (ask for the whole canvas instead)", len(parts), MaxRegions)
	}
	out := make([]Region, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return nil, Errorf(EInvalid, "regions: %q is not a region id (a decimal number)", truncate(p, 16))
		}
		out = append(out, Region(n))
	}
	return CheckRegions(s, out)
}

// CheckRegions validates ids as ParseRegions does and returns them sorted.
func CheckRegions(s Size, ids []Region) ([]Region, error) {
	if len(ids) > MaxRegions {
		return nil, Errorf(EInvalid, "regions: %d named, at most %d (ask for the whole canvas instead)", len(ids), MaxRegions)
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	for i, r := range out {
		if !s.HasRegion(r) {
			return nil, Errorf(EInvalid, "regions: %d is outside the %dx%d canvas (regions of %d pixels, %d per row)",
				r, s.Width, s.Height, RegionSide, RegionStride)
		}
		if i > 0 && out[i-1] == r {
			return nil, Errorf(EInvalid, "regions: %d named twice", r)
		}
	}
	return out, nil
}
