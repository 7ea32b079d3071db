// Package promtest reads a Prometheus collector the way a scrape does, for
// the tests of the components that own their series (store, relay,
// stream, gateway). It uses a pedantic registry, so a collector whose
// Collect sends a series its Describe did not announce (or the other way
// round) fails the test, as it would fail a real /metrics at scrape time.
package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Values registers c alone, scrapes it once and returns each unlabelled
// series by name: a gauge's or counter's value, and a histogram's
// <name>_count and <name>_sum. It fails the test when the registry
// refuses c or the scrape fails.
func Values(tb testing.TB, c prometheus.Collector) map[string]float64 {
	tb.Helper()
	mfs := gather(tb, c)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch {
			case m.Gauge != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[mf.GetName()+"_count"] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// Kinds returns each series' type by name ("GAUGE", "COUNTER",
// "HISTOGRAM"), for tests that pin what a dashboard may rate().
func Kinds(tb testing.TB, c prometheus.Collector) map[string]string {
	tb.Helper()
	mfs := gather(tb, c)
	out := map[string]string{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType().String()
	}
	return out
}

// gather registers c alone in a pedantic registry (which checks that what
// c describes is what it collects) and scrapes it once.
func gather(tb testing.TB, c prometheus.Collector) []*dto.MetricFamily {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		tb.Fatalf("register collector: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("scrape collector: %v", err)
	}
	return mfs
}
