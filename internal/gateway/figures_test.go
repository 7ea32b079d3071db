package gateway_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/harness/promtest"
)

// TestFiguresFollowTheStream: after pixel events and a canary pass, the
// gateway's /api/health section and its series show them: the histogram
// counted each pixel event (and the OnBroadcast hook still saw each one),
// the canary's latency and age are set, the consumer group has nothing
// pending; once Redis is gone, health says so with a short code and the
// pending count is unknown: absent from the scrape, not a number.
func TestFiguresFollowTheStream(t *testing.T) {
	srv, rdb, pub := newRig(t, false)
	o := opts(rdb, "gw-fig")
	var hooked atomic.Int64
	o.OnBroadcast = func(time.Duration) { hooked.Add(1) }
	gw := gatewaytest.Start(t, o, pub)
	gw.WaitReady(t, "e1")
	pub.Publish(30)
	pub.PublishCanary()
	end := pub.Position().Seq
	deadline := time.Now().Add(10 * time.Second)
	for gw.G.Stats().LastSeq != end || gw.G.Stats().LastCanary.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("gateway never broadcast up to %d: %+v", end, gw.G.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}

	h := gw.G.Health(context.Background())
	if h["lastSeq"] != end || h["epoch"] != "e1" || h["ready"] != true || h["clients"] != 0 {
		t.Errorf("health %v: want lastSeq %d, epoch e1, ready, no clients", h, end)
	}
	if _, ok := h["lastCanary"]; !ok {
		t.Errorf("health lacks lastCanary after a canary: %v", h)
	}
	if ms, ok := h["canaryLatencyMs"].(float64); !ok || ms < 0 {
		t.Errorf("canaryLatencyMs %v", h["canaryLatencyMs"])
	}
	for _, k := range []string{"degraded", "resyncs", "delivered", "broadcast", "duplicates", "reaped", "lag"} {
		if _, ok := h[k]; !ok {
			t.Errorf("health lacks %s: %v", k, h)
		}
	}
	if _, ok := h["error"]; ok {
		t.Errorf("healthy gateway reports an error: %v", h)
	}

	c := gw.G.Collector()
	var v map[string]float64
	for { // the acknowledgement follows the broadcast
		v = promtest.Values(t, c)
		if v["pixelflow_gateway_pending"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries still pending: %v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v["pixelflow_gateway_commit_to_broadcast_seconds_count"] != 30 || hooked.Load() != 30 {
		t.Errorf("histogram counted %v pixel events, the hook %d; want 30 each (the canary is not a pixel)",
			v["pixelflow_gateway_commit_to_broadcast_seconds_count"], hooked.Load())
	}
	if v["pixelflow_gateway_broadcast_total"] != float64(gw.G.Stats().Broadcast) || v["pixelflow_gateway_broadcast_total"] < 31 {
		t.Errorf("broadcast_total %v, stats %d", v["pixelflow_gateway_broadcast_total"], gw.G.Stats().Broadcast)
	}
	if v["pixelflow_gateway_canary_age_seconds"] < 0 || v["pixelflow_canary_latency_seconds"] < 0 {
		t.Errorf("canary series after a canary: %v", v)
	}
	kinds := promtest.Kinds(t, c)
	for name, kind := range map[string]string{
		"pixelflow_gateway_clients": "GAUGE", "pixelflow_gateway_degraded_total": "COUNTER", "pixelflow_gateway_resyncs_total": "COUNTER",
		"pixelflow_gateway_delivered_total": "COUNTER", "pixelflow_gateway_broadcast_total": "COUNTER", "pixelflow_gateway_reaped_total": "COUNTER",
		"pixelflow_gateway_pending": "GAUGE", "pixelflow_gateway_lag": "GAUGE", "pixelflow_canary_latency_seconds": "GAUGE",
		"pixelflow_gateway_canary_age_seconds": "GAUGE", "pixelflow_gateway_commit_to_broadcast_seconds": "HISTOGRAM",
	} {
		if kinds[name] != kind {
			t.Errorf("%s is %q, want %s", name, kinds[name], kind)
		}
	}

	srv.Kill()
	for gw.G.Health(context.Background())["error"] != "redis_unreachable" {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("health never said redis_unreachable: %v", gw.G.Health(context.Background()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	v = promtest.Values(t, c)
	if p, ok := v["pixelflow_gateway_pending"]; ok {
		t.Errorf("Redis gone: pending %v, want the series absent (unknown)", p)
	}
	if _, ok := v["pixelflow_gateway_clients"]; !ok {
		t.Errorf("Redis gone: the gateway's own figures went missing too: %v", v)
	}
}

// TestFiguresBeforeACanary: with no canary yet the age counts from the
// gateway's start (an alert on it fires for a gateway that never gets
// one) and health has no lastCanary.
func TestFiguresBeforeACanary(t *testing.T) {
	_, rdb, pub := newRig(t, false)
	before := time.Now()
	gw := startReady(t, rdb, pub, "gw-nocanary")
	if _, ok := gw.G.Health(context.Background())["lastCanary"]; ok {
		t.Errorf("lastCanary before any canary: %v", gw.G.Health(context.Background()))
	}
	time.Sleep(50 * time.Millisecond)
	age := promtest.Values(t, gw.G.Collector())["pixelflow_gateway_canary_age_seconds"]
	if since := time.Since(before).Seconds(); age < 0.05 || age > since {
		t.Errorf("canary age before any canary: %vs, want the time since the gateway started (0.05s..%.3fs)", age, since)
	}
}
