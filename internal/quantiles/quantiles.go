// Package quantiles summarises latency samples the one way pixelflow
// reports them (the /ops dashboard, the chaos drills, and, through its
// HDR histograms, the load test): rank quantiles in milliseconds.
package quantiles

import (
	"slices"
	"time"
)

// Millis returns the quantiles qs (each 0..1) of d in milliseconds, in the
// order asked: the quantile q of n sorted samples is the sample of rank
// q·n rounded to the nearest (counted from 1; the smallest for q = 0, the
// largest for q = 1). That is the rank an HDR histogram's ValueAtQuantile
// answers (hdrhistogram-go: ⌊q·n + 0.5⌋), so the dashboard, the drills
// and the load test agree on one P99. With no samples every quantile is 0.
// d is not modified.
func Millis(d []time.Duration, qs ...float64) []float64 {
	out := make([]float64, len(qs))
	if len(d) == 0 {
		return out
	}
	d = slices.Clone(d)
	slices.Sort(d)
	for i, q := range qs {
		out[i] = float64(d[Rank(len(d), q)-1].Microseconds()) / 1000
	}
	return out
}

// Rank is the rank of quantile q (0..1) among n > 0 samples, HDR's:
// ⌊q·n + 0.5⌋, at least 1 and at most n.
func Rank(n int, q float64) int {
	return min(n, max(1, int(q*float64(n)+0.5)))
}
