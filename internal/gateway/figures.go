package gateway

import (
	"cmp"
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// The gateway's figures for the operator, next to the counters that make
// them: its section of /api/health (Health) and its Prometheus series
// (Collector). Both read Stats when asked; only the commit → broadcast
// histogram observes as events pass (one Observe per pixel event).

// Health is the gateway's section of /api/health. Only figures and short
// codes: a Redis error names addresses, so it stays in the log.
func (g *Gateway) Health(context.Context) map[string]any {
	st := g.Stats()
	gw := map[string]any{
		"clients": st.Clients, "degraded": st.Degraded, "resyncs": st.Resyncs, "delivered": st.Delivered,
		"broadcast": st.Broadcast, "duplicates": st.Duplicates, "offered": st.Offered, "reaped": st.Reaped,
		"lastSeq": st.LastSeq, "epoch": st.Epoch, "lag": st.Lag, "ready": st.Ready,
		"canaryLatencyMs": float64(st.CanaryLatency.Microseconds()) / 1000,
	}
	if !st.LastCanary.IsZero() {
		gw["lastCanary"] = st.LastCanary
	}
	if st.LastError != "" {
		gw["error"] = "redis_unreachable"
	}
	return gw
}

// newCommitToBroadcast is the gateway's latency histogram (observed in
// observe, exposed by Collector).
func newCommitToBroadcast() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pixelflow_gateway_commit_to_broadcast_seconds",
		Help:    "Pixel events' commit → broadcast time at this gateway.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	})
}

// Collector returns the gateway's Prometheus series: its counters and
// gauges read from one Stats at each scrape, the pending count of its
// consumer group read from Redis (left out of a scrape when Redis does not
// answer within telemetry.ScrapeTimeout), and the commit → broadcast
// histogram.
func (g *Gateway) Collector() prometheus.Collector {
	type figures struct {
		Stats
		pending      int64
		pendingKnown bool
	}
	read := func(ctx context.Context) figures {
		f := figures{Stats: g.Stats()}
		f.pending, f.pendingKnown = g.pendingCount(ctx)
		return f
	}
	series := func(name, help string, t prometheus.ValueType, v func(figures) float64) telemetry.Series[figures] {
		return telemetry.Series[figures]{Name: name, Help: help, Type: t, Value: v}
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	pending := series("pixelflow_gateway_pending", "Entries delivered to this gateway's consumer group and not yet acknowledged (absent while Redis does not answer).", gauge, func(f figures) float64 { return float64(f.pending) })
	pending.Known = func(f figures) bool { return f.pendingKnown }
	return telemetry.Collectors{
		telemetry.Snapshot(read,
			series("pixelflow_gateway_clients", "Connected WebSocket clients.", gauge, func(f figures) float64 { return float64(f.Clients) }),
			series("pixelflow_gateway_region_clients", "Connected clients receiving only their regions (docs/protocol.md, Regions).", gauge, func(f figures) float64 { return float64(f.RegionClients) }),
			series("pixelflow_gateway_region_subscriptions", "Regions held, summed over this gateway's region clients.", gauge, func(f figures) float64 { return float64(f.Subscriptions) }),
			series("pixelflow_gateway_degraded_total", "Clients degraded for being slow.", counter, func(f figures) float64 { return float64(f.Degraded) }),
			series("pixelflow_gateway_resyncs_total", "Resync frames sent to clients.", counter, func(f figures) float64 { return float64(f.Resyncs) }),
			series("pixelflow_gateway_delivered_total", "Events written to client sockets, summed over clients.", counter, func(f figures) float64 { return float64(f.Delivered) }),
			series("pixelflow_gateway_broadcast_total", "Stream entries handed to the hub.", counter, func(f figures) float64 { return float64(f.Broadcast) }),
			series("pixelflow_gateway_reaped_total", "Consumer groups of gateways silent past GROUP_TTL that this gateway destroyed.", counter, func(f figures) float64 { return float64(f.Reaped) }),
			pending,
			series("pixelflow_gateway_lag", "Stream entries not yet broadcast by this gateway (its consumer group's lag).", gauge, func(f figures) float64 { return float64(f.Lag) }),
			series("pixelflow_canary_latency_seconds", "Commit → arrival time of the last canary at this gateway.", gauge, func(f figures) float64 { return f.CanaryLatency.Seconds() }),
			// Counted from the gateway's start until a first canary arrives,
			// so an alert on the age fires for a gateway that never
			// receives one, as for one whose canaries stopped.
			series("pixelflow_gateway_canary_age_seconds", "Time since the last canary arrived (since the gateway started, before the first).", gauge, func(f figures) float64 {
				return time.Since(cmp.Or(f.LastCanary, g.started)).Seconds()
			}),
		),
		g.commitToBroadcast,
	}
}

// pendingCount is the consumer group's pending entries; known is false
// when Redis did not answer. A group that does not exist (yet, or no
// longer: a new epoch deletes the stream) has nothing pending.
func (g *Gateway) pendingCount(ctx context.Context) (n int64, known bool) {
	p, err := g.opts.Redis.XPending(ctx, g.keys.Stream, g.group).Result()
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return 0, true
	}
	if err != nil {
		return 0, false
	}
	return p.Count, true
}
