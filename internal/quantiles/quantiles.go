// Package quantiles summarises latency samples the one way pixelflow
// reports them (the /ops dashboard, the chaos drills): nearest-rank
// quantiles in milliseconds.
package quantiles

import (
	"slices"
	"time"
)

// Millis returns the quantiles qs (each 0..1) of d in milliseconds, in the
// order asked: the sample at rank ⌊q·n⌋ of the sorted samples (the largest
// for q = 1). With no samples every quantile is 0. d is not modified.
func Millis(d []time.Duration, qs ...float64) []float64 {
	out := make([]float64, len(qs))
	if len(d) == 0 {
		return out
	}
	d = slices.Clone(d)
	slices.Sort(d)
	for i, q := range qs {
		out[i] = float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
	}
	return out
}
