package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/promtest"
	"github.com/pixelflow/pixelflow/internal/store"
)

// TestHealthReportsTheOutbox: the outbox's /api/health section carries the
// backlog, its oldest event's age, the lease holder's instance (not its
// process id) and the retries; a fresh store has no age to show.
func TestHealthReportsTheOutbox(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, store.Options{})
	h := s.Health(ctx)
	if h["backlog"] != int64(0) || h["txnRetries"] != int64(0) {
		t.Fatalf("fresh store: %v, want backlog 0 and txnRetries 0", h)
	}
	if _, ok := h["oldestPendingAgeSeconds"]; ok {
		t.Errorf("fresh store shows an oldest pending age: %v", h)
	}
	for i := range 3 {
		if _, _, err := s.Place(ctx, place(i, 0, canvas.Color(i)), "", store.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := s.AcquireLease(ctx, "relay-a-4242", time.Minute); err != nil || !ok {
		t.Fatalf("acquire lease: %v %v", ok, err)
	}
	h = s.Health(ctx)
	if h["backlog"] != int64(3) {
		t.Errorf("backlog %v, want 3", h["backlog"])
	}
	if age, ok := h["oldestPendingAgeSeconds"].(float64); !ok || age < 0 || age > 60 {
		t.Errorf("oldestPendingAgeSeconds %v, want a small age", h["oldestPendingAgeSeconds"])
	}
	if h["leaseHolder"] != "relay-a" {
		t.Errorf("leaseHolder %v, want relay-a (the pid left out)", h["leaseHolder"])
	}
	for _, k := range []string{"epoch", "seq", "txnRetries"} {
		if _, ok := h[k]; !ok {
			t.Errorf("health lacks %s: %v", k, h)
		}
	}
	if _, ok := h["error"]; ok {
		t.Errorf("healthy store reports an error: %v", h)
	}
}

// TestHealthOfAnUnreachableStore: a store that does not answer shows a
// short code, never the driver's error (it names addresses).
func TestHealthOfAnUnreachableStore(t *testing.T) {
	s, err := store.Open(context.Background(), "", "", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := s.Health(context.Background())
	if h["error"] != "unavailable" {
		t.Errorf("closed store: error %v, want unavailable", h["error"])
	}
	if _, ok := h["backlog"]; ok {
		t.Errorf("closed store shows a backlog: %v", h)
	}
	v := promtest.Values(t, s.Collector())
	if v["pixelflow_outbox_backlog"] != -1 || v["pixelflow_outbox_oldest_pending_age_seconds"] != 0 {
		t.Errorf("closed store's series: %v, want backlog -1 and age 0", v)
	}
}

// TestCollectorReadsTheOutbox: the store's series, with their types (the
// dashboards rate() the counter), follow the outbox.
func TestCollectorReadsTheOutbox(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, store.Options{})
	c := s.Collector()
	want := map[string]string{"pixelflow_outbox_backlog": "GAUGE", "pixelflow_outbox_oldest_pending_age_seconds": "GAUGE", "pixelflow_store_txn_retries_total": "COUNTER"}
	kinds := promtest.Kinds(t, c)
	for name, kind := range want {
		if kinds[name] != kind {
			t.Errorf("%s is %q, want %s", name, kinds[name], kind)
		}
	}
	if len(kinds) != len(want) {
		t.Errorf("series %v, want exactly %v", kinds, want)
	}
	if v := promtest.Values(t, c); v["pixelflow_outbox_backlog"] != 0 || v["pixelflow_outbox_oldest_pending_age_seconds"] != 0 {
		t.Errorf("fresh store: %v", v)
	}
	for i := range 2 {
		if _, _, err := s.Place(ctx, place(i, 1, canvas.Color(i)), "", store.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // the oldest event ages
	v := promtest.Values(t, s.Collector())
	if v["pixelflow_outbox_backlog"] != 2 || v["pixelflow_outbox_oldest_pending_age_seconds"] <= 0 {
		t.Errorf("after two placements: %v, want backlog 2 and an age", v)
	}
}

func TestHolderInstance(t *testing.T) {
	for holder, want := range map[string]string{
		"api-1-4242":       "api-1", // instance ids may hold dashes
		"api-1-1.9f3a00c2": "api-1", // pid and start nonce
		"relay-1.":         "relay-1.",
		"relay-1.xyz":      "relay-1.xyz", // not a nonce
		"relay-.9f":        "relay-.9f",
		"relay-7":          "relay",
		"relay":            "relay",
		"relay-":           "relay-", // no pid: whole
		"-42":              "-42",
		"gw-1a":            "gw-1a", // not a pid
		"":                 "",
	} {
		if got := store.HolderInstance(holder); got != want {
			t.Errorf("HolderInstance(%q) = %q, want %q", holder, got, want)
		}
	}
}
