package telemetry_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/harness/promtest"
	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// A Snapshot reads its figures once per scrape and reports each series, of
// its type, from that one reading; Collectors registers it with a
// histogram as one collector.
func TestSnapshotReadsOncePerScrape(t *testing.T) {
	type figures struct{ clients, sent int }
	reads := 0
	snap := telemetry.Snapshot(func(context.Context) figures { reads++; return figures{clients: 3, sent: 40 + reads} },
		telemetry.Series[figures]{Name: "t_clients", Help: "Clients.", Type: prometheus.GaugeValue, Value: func(f figures) float64 { return float64(f.clients) }},
		telemetry.Series[figures]{Name: "t_sent_total", Help: "Sent.", Type: prometheus.CounterValue, Value: func(f figures) float64 { return float64(f.sent) }},
	)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_seconds", Help: "Time."})
	h.Observe(0.5)
	c := telemetry.Collectors{snap, h}
	v := promtest.Values(t, c)
	if reads != 1 || v["t_clients"] != 3 || v["t_sent_total"] != 41 || v["t_seconds_count"] != 1 {
		t.Fatalf("%d reads, values %v; want 1 read, clients 3, sent 41, one observation", reads, v)
	}
	if k := promtest.Kinds(t, c); k["t_clients"] != "GAUGE" || k["t_sent_total"] != "COUNTER" || k["t_seconds"] != "HISTOGRAM" {
		t.Fatalf("kinds %v", k)
	}
}
