package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/promtest"
	"github.com/pixelflow/pixelflow/internal/relay"
)

// TestFiguresFollowTheRelay: the relay's /api/health section and its
// series show a leader that published every event, with the holder's
// instance id only (its process id stays in the log).
func TestFiguresFollowTheRelay(t *testing.T) {
	e := newEnv(t, false)
	r, _, _ := e.startRelay("relay-a-4242", relay.Options{BatchSize: 8})
	e.write(20)
	e.waitDrained(10 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for r.Status().Published < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("relay published %d of 20", r.Status().Published)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := r.Health(context.Background())
	if h["state"] != "leader" || h["holder"] != "relay-a" || h["leader"] != "relay-a" {
		t.Errorf("health %v: want state leader, holder and leader relay-a", h)
	}
	if h["published"] != int64(20) || h["seq"] != uint64(20) {
		t.Errorf("health %v: want published 20, seq 20", h)
	}
	if b, ok := h["batches"].(int64); !ok || b < 1 || b > 20 {
		t.Errorf("batches %v: 20 events take between 1 and 20 claims", h["batches"])
	}
	if _, ok := h["lastPublishAt"]; !ok {
		t.Errorf("health lacks lastPublishAt after publishing: %v", h)
	}
	if _, ok := h["error"]; ok {
		t.Errorf("healthy relay reports an error: %v", h)
	}
	for _, k := range []string{"epoch", "epochChanges", "reconciled", "transactions", "folded"} {
		if _, ok := h[k]; !ok {
			t.Errorf("health lacks %s: %v", k, h)
		}
	}

	v := promtest.Values(t, r.Collector())
	want := map[string]float64{"pixelflow_relay_published_total": 20, "pixelflow_relay_leader": 1, "pixelflow_relay_epoch_changes_total": 1, "pixelflow_relay_reconciled_total": 0}
	for name, w := range want {
		if v[name] != w {
			t.Errorf("%s = %v, want %v", name, v[name], w)
		}
	}
	// The relay keeps running (an idle claim may come between two reads),
	// so each counter must lie between the health reports taken before and
	// after the scrape.
	h2 := r.Health(context.Background())
	for metric, key := range map[string]string{"pixelflow_relay_batches_total": "batches",
		"pixelflow_relay_store_transactions_total": "transactions", "pixelflow_relay_folded_marks_total": "folded"} {
		if got, lo, hi := v[metric], float64(h[key].(int64)), float64(h2[key].(int64)); got < lo || got > hi {
			t.Errorf("%s = %v, health says %v before and %v after", metric, got, lo, hi)
		}
	}
	// Every batch took at least one store transaction (its claim, or a
	// claim its mark was folded into).
	if tx := v["pixelflow_relay_store_transactions_total"]; tx < v["pixelflow_relay_batches_total"] {
		t.Errorf("store_transactions_total %v for %v batches", tx, v["pixelflow_relay_batches_total"])
	}
	kinds := promtest.Kinds(t, r.Collector())
	for name, kind := range map[string]string{"pixelflow_relay_published_total": "COUNTER", "pixelflow_relay_batches_total": "COUNTER",
		"pixelflow_relay_epoch_changes_total": "COUNTER", "pixelflow_relay_reconciled_total": "COUNTER", "pixelflow_relay_leader": "GAUGE",
		"pixelflow_relay_store_transactions_total": "COUNTER", "pixelflow_relay_folded_marks_total": "COUNTER"} {
		if kinds[name] != kind {
			t.Errorf("%s is %q, want %s", name, kinds[name], kind)
		}
	}
}

// TestFiguresOfAStandby: a relay that does not hold the lease says so,
// and its leader gauge is 0.
func TestFiguresOfAStandby(t *testing.T) {
	e := newEnv(t, false)
	lead, _, _ := e.startRelay("relay-a-1", relay.Options{LeaseTTL: 10 * time.Second})
	deadline := time.Now().Add(5 * time.Second)
	for lead.Status().State != "leader" {
		if time.Now().After(deadline) {
			t.Fatalf("first relay never led: %+v", lead.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	standby, _, _ := e.startRelay("relay-b-2", relay.Options{LeaseTTL: 10 * time.Second})
	for standby.Status().State != "standby" || standby.Status().Leader == "" {
		if time.Now().After(deadline) {
			t.Fatalf("second relay never stood by: %+v", standby.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := standby.Health(context.Background())
	if h["state"] != "standby" || h["holder"] != "relay-b" || h["leader"] != "relay-a" {
		t.Errorf("standby's health %v: want state standby, holder relay-b, leader relay-a", h)
	}
	if v := promtest.Values(t, standby.Collector()); v["pixelflow_relay_leader"] != 0 || v["pixelflow_relay_published_total"] != 0 {
		t.Errorf("standby's series: %v", v)
	}
}
