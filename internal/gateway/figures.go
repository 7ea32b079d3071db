package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		"broadcast": st.Broadcast, "duplicates": st.Duplicates, "reaped": st.Reaped,
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
// gauges read from Stats at scrape time, the pending count of its
// consumer group read from Redis (-1 when Redis does not answer within a
// second, so a dead Redis does not hang /metrics), and the commit →
// broadcast histogram.
func (g *Gateway) Collector() prometheus.Collector {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &collector{
		g:         g,
		clients:   desc("pixelflow_gateway_clients", "Connected WebSocket clients."),
		degraded:  desc("pixelflow_gateway_degraded_total", "Clients degraded for being slow."),
		resyncs:   desc("pixelflow_gateway_resyncs_total", "Resync frames sent to clients."),
		delivered: desc("pixelflow_gateway_delivered_total", "Events written to client sockets, summed over clients."),
		broadcast: desc("pixelflow_gateway_broadcast_total", "Stream entries handed to the hub."),
		reaped:    desc("pixelflow_gateway_reaped_total", "Consumer groups of gateways silent past GROUP_TTL that this gateway destroyed."),
		pending:   desc("pixelflow_gateway_pending", "Entries delivered to this gateway's consumer group and not yet acknowledged (-1: unknown)."),
		lag:       desc("pixelflow_gateway_lag", "Stream entries not yet broadcast by this gateway (its consumer group's lag)."),
		canaryLat: desc("pixelflow_canary_latency_seconds", "Commit → arrival time of the last canary at this gateway."),
		canaryAge: desc("pixelflow_gateway_canary_age_seconds", "Time since the last canary arrived (-1: none yet)."),
	}
}

type collector struct {
	g                                                *Gateway
	clients, degraded, resyncs, delivered, broadcast *prometheus.Desc
	reaped, pending, lag, canaryLat, canaryAge       *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.clients, c.degraded, c.resyncs, c.delivered, c.broadcast,
		c.reaped, c.pending, c.lag, c.canaryLat, c.canaryAge} {
		ch <- d
	}
	c.g.commitToBroadcast.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.g.Stats()
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
		ch <- prometheus.MustNewConstMetric(d, t, v)
	}
	metric(c.clients, prometheus.GaugeValue, float64(st.Clients))
	metric(c.degraded, prometheus.CounterValue, float64(st.Degraded))
	metric(c.resyncs, prometheus.CounterValue, float64(st.Resyncs))
	metric(c.delivered, prometheus.CounterValue, float64(st.Delivered))
	metric(c.broadcast, prometheus.CounterValue, float64(st.Broadcast))
	metric(c.reaped, prometheus.CounterValue, float64(st.Reaped))
	metric(c.pending, prometheus.GaugeValue, float64(c.pendingCount()))
	metric(c.lag, prometheus.GaugeValue, float64(st.Lag))
	metric(c.canaryLat, prometheus.GaugeValue, st.CanaryLatency.Seconds())
	age := -1.0
	if !st.LastCanary.IsZero() {
		age = time.Since(st.LastCanary).Seconds()
	}
	metric(c.canaryAge, prometheus.GaugeValue, age)
	c.g.commitToBroadcast.Collect(ch)
}

// pendingCount is the consumer group's pending entries, -1 when unknown.
func (c *collector) pendingCount() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := c.g.opts.Redis.XPending(ctx, c.g.keys.Stream, c.g.group).Result()
	if err != nil {
		return -1
	}
	return p.Count
}
