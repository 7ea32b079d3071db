package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pixelflow/pixelflow/internal/stream"
)

// registerMetrics exposes each role's state on /metrics. Most series are
// read at scrape time from the components' own counters (Stats, Status),
// so the hot paths pay nothing for them; only the gateway's latency
// histogram and the HTTP middleware observe as they go.
func (m *Main) registerMetrics(reg *prometheus.Registry) {
	scrape := func(f func(ctx context.Context) float64) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return f(ctx)
		}
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	if s := m.store; s != nil {
		// Both outbox gauges come from one store query per scrape.
		var mu sync.Mutex
		var at time.Time
		var n int64
		var oldest time.Time
		var err error
		backlog := func(ctx context.Context) (int64, time.Time, error) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(at) > 500*time.Millisecond {
				n, oldest, err = s.Backlog(ctx)
				at = time.Now()
			}
			return n, oldest, err
		}
		gauge("pixelflow_outbox_backlog", "Outbox events not yet published (-1: store unreachable).", scrape(func(ctx context.Context) float64 {
			n, _, err := backlog(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
		gauge("pixelflow_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox event (0: none).", scrape(func(ctx context.Context) float64 {
			_, oldest, err := backlog(ctx)
			if err != nil || oldest.IsZero() {
				return 0
			}
			return time.Since(oldest).Seconds()
		}))
		counter("pixelflow_store_txn_retries_total", "Store transactions retried after a transient error.", func() float64 { return float64(s.Retries()) })
	}
	if r := m.relay; r != nil {
		counter("pixelflow_relay_published_total", "Events the relay published to the stream.", func() float64 { return float64(r.Status().Published) })
		counter("pixelflow_relay_batches_total", "Publish batches (published_total / batches_total is the mean batch size).", func() float64 { return float64(r.Status().Batches) })
		counter("pixelflow_relay_store_transactions_total", "Store transactions the relay ran to claim and mark (store_transactions_total / batches_total is the store's cost per batch; a mark folded into the next claim shares its transaction).", func() float64 { return float64(r.Status().Transactions) })
		counter("pixelflow_relay_folded_marks_total", "Marks the relay folded into the transaction of its next claim (RELAY_MARK_DELAY).", func() float64 { return float64(r.Status().Folded) })
		counter("pixelflow_relay_epoch_changes_total", "Stream epochs this relay started (Redis lost its data, or first start).", func() float64 { return float64(r.Status().EpochChanges) })
		counter("pixelflow_relay_reconciled_total", "Events found already in the stream and marked instead of republished.", func() float64 { return float64(r.Status().Reconciled) })
		gauge("pixelflow_relay_leader", "1 while this relay holds the sequencer lease.", func() float64 {
			if r.Status().State == "leader" {
				return 1
			}
			return 0
		})
	}
	if rc := m.redis; rc != nil {
		key := stream.KeysFor(m.Config.Canvas).Stream
		gauge("pixelflow_stream_length", "Entries in the Redis stream (-1: Redis unreachable).", scrape(func(ctx context.Context) float64 {
			n, err := rc.XLen(ctx, key).Result()
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	if g := m.gateway; g != nil {
		gauge("pixelflow_gateway_clients", "Connected WebSocket clients.", func() float64 { return float64(g.Stats().Clients) })
		counter("pixelflow_gateway_degraded_total", "Clients degraded for being slow.", func() float64 { return float64(g.Stats().Degraded) })
		counter("pixelflow_gateway_resyncs_total", "Resync frames sent to clients.", func() float64 { return float64(g.Stats().Resyncs) })
		counter("pixelflow_gateway_delivered_total", "Events written to client sockets, summed over clients.", func() float64 { return float64(g.Stats().Delivered) })
		counter("pixelflow_gateway_broadcast_total", "Stream entries handed to the hub.", func() float64 { return float64(g.Stats().Broadcast) })
		counter("pixelflow_gateway_reaped_total", "Consumer groups of gateways silent past GROUP_TTL that this gateway destroyed.", func() float64 { return float64(g.Stats().Reaped) })
		if rc := m.redis; rc != nil {
			key, group := stream.KeysFor(m.Config.Canvas).Stream, stream.GroupName(m.Config.InstanceID)
			gauge("pixelflow_gateway_pending", "Entries delivered to this gateway's consumer group and not yet acknowledged (-1: unknown).", scrape(func(ctx context.Context) float64 {
				p, err := rc.XPending(ctx, key, group).Result()
				if err != nil {
					return -1
				}
				return float64(p.Count)
			}))
		}
		gauge("pixelflow_gateway_lag", "Stream entries not yet broadcast by this gateway (its consumer group's lag).", func() float64 { return float64(g.Stats().Lag) })
		gauge("pixelflow_canary_latency_seconds", "Commit → arrival time of the last canary at this gateway.", func() float64 { return g.Stats().CanaryLatency.Seconds() })
		gauge("pixelflow_gateway_canary_age_seconds", "Time since the last canary arrived (-1: none yet).", func() float64 {
			if last := g.Stats().LastCanary; !last.IsZero() {
				return time.Since(last).Seconds()
			}
			return -1
		})
	}
}

// commitToBroadcast is the gateway's latency histogram.
func commitToBroadcast(reg *prometheus.Registry) func(time.Duration) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pixelflow_gateway_commit_to_broadcast_seconds",
		Help:    "Pixel events' commit → broadcast time at this gateway.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	})
	reg.MustRegister(h)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// instrumentHTTP counts requests and times them by method and status.
func instrumentHTTP(reg *prometheus.Registry, h http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pixelflow_http_requests_total", Help: "HTTP requests by method and status."}, []string{"method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pixelflow_http_request_duration_seconds", Help: "HTTP request time by method and status (WebSocket sessions excluded).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1}}, []string{"method", "code"})
	reg.MustRegister(requests, duration)
	counted := promhttp.InstrumentHandlerCounter(requests, h)
	timed := promhttp.InstrumentHandlerDuration(duration, counted)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" { // a session, not a request: hijacked, and hours long
			h.ServeHTTP(w, r)
			return
		}
		timed.ServeHTTP(w, r)
	})
}
