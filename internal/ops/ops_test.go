package ops

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/gateway"
)

// section is a component's health section, fixed.
type section map[string]any

func (s section) Health(context.Context) map[string]any { return s }

func TestHealthReportHasTheSectionsThisProcessRuns(t *testing.T) {
	ctx := context.Background()
	full := (&Health{Role: "serve", Instance: "i1", Store: "embedded",
		Outbox: section{"backlog": 3}, Relay: section{"state": "leader"}, Gateway: section{"clients": 2}}).Report(ctx)
	want := map[string]any{"role": "serve", "instance": "i1", "store": "embedded",
		"outbox": map[string]any{"backlog": 3}, "relay": map[string]any{"state": "leader"}, "gateway": map[string]any{"clients": 2}}
	if len(full) != len(want) {
		t.Errorf("serve report %v, want %v", full, want)
	}
	for k, w := range want {
		if got, _ := json.Marshal(full[k]); string(got) != mustJSON(t, w) {
			t.Errorf("serve report %s = %s, want %s", k, got, mustJSON(t, w))
		}
	}
	gwOnly := (&Health{Role: "gateway", Instance: "g1", Store: "embedded", Gateway: section{"clients": 0}}).Report(ctx)
	for _, k := range []string{"outbox", "store", "relay"} {
		if _, ok := gwOnly[k]; ok {
			t.Errorf("a gateway alone reports %s: %v", k, gwOnly)
		}
	}
	if gwOnly["role"] != "gateway" || gwOnly["gateway"] == nil {
		t.Errorf("gateway report %v", gwOnly)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWindowQuantilesOfRecentSamples(t *testing.T) {
	now := time.Now()
	w := Window{now: func() time.Time { return now }}
	if p50, p99 := w.Quantiles(time.Minute); p50 != 0 || p99 != 0 {
		t.Errorf("empty window: %v %v, want 0 0", p50, p99)
	}
	for i := 1; i <= 100; i++ {
		w.Add(time.Duration(i) * time.Millisecond)
	}
	p50, p99 := w.Quantiles(time.Minute)
	if p50 < 49 || p50 > 51 || p99 < 98 || p99 > 100 {
		t.Errorf("1..100 ms: P50 %v P99 %v", p50, p99)
	}
	// Samples older than `within` are left out.
	now = now.Add(time.Minute)
	w.Add(500 * time.Millisecond)
	if p50, p99 := w.Quantiles(10 * time.Second); p50 != 500 || p99 != 500 {
		t.Errorf("last 10 s: P50 %v P99 %v, want the one recent sample, 500", p50, p99)
	}
}

func TestWindowKeepsTheNewestSamples(t *testing.T) {
	var w Window
	for range windowSize {
		w.Add(time.Second)
	}
	for range windowSize {
		w.Add(time.Millisecond)
	}
	if p50, p99 := w.Quantiles(time.Minute); p50 != 1 || p99 != 1 {
		t.Errorf("after the window turned over: P50 %v P99 %v, want 1 ms (the old samples gone)", p50, p99)
	}
	if len(w.d) != windowSize {
		t.Errorf("window holds %d samples, bound %d", len(w.d), windowSize)
	}
}

// fakeGateway has fixed stats.
type fakeGateway gateway.Stats

func (g fakeGateway) Stats() gateway.Stats { return gateway.Stats(g) }

// fakeBoard is a board in memory; err fails every call.
type fakeBoard struct {
	mu      sync.Mutex
	length  int64
	figures map[string]string
	err     error
}

func (b *fakeBoard) Len(context.Context) (int64, error) { return b.length, b.err }

func (b *fakeBoard) PutFigures(_ context.Context, id string, f []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.figures == nil {
		b.figures = map[string]string{}
	}
	b.figures[id] = string(f)
	return nil
}

func (b *fakeBoard) Figures(context.Context) (map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	for k, v := range b.figures {
		out[k] = v
	}
	return out, b.err
}

// opsData is /ops/data as the dashboard reads it.
type opsData struct {
	Instance     string           `json:"instance"`
	StreamLength *int64           `json:"streamLength"`
	Gateways     []GatewayFigures `json:"gateways"`
	Outbox       map[string]any   `json:"outbox"`
	Relay        map[string]any   `json:"relay"`
	Errors       []string         `json:"errors"`
	raw          map[string]json.RawMessage
}

func getData(t *testing.T, d *Dashboard) opsData {
	t.Helper()
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ops/data", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("/ops/data: %d %v", rec.Code, rec.Header())
	}
	var out opsData
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out.raw); err != nil {
		t.Fatal(err)
	}
	return out
}

func figuresJSON(t *testing.T, f GatewayFigures) string {
	t.Helper()
	return mustJSON(t, f)
}

// TestDataGathersEveryGateway: /ops/data shows this gateway first-hand and
// every other gateway's fresh figures from the board, sorted by id; stale
// and unreadable figures are left out; the outbox and relay come from this
// process's report when it runs the store.
func TestDataGathersEveryGateway(t *testing.T) {
	now := time.Now().UTC()
	board := &fakeBoard{length: 42, figures: map[string]string{
		"b":    figuresJSON(t, GatewayFigures{ID: "b", At: now, Clients: 7}),
		"0":    figuresJSON(t, GatewayFigures{ID: "0", At: now, Clients: 1}),
		"old":  figuresJSON(t, GatewayFigures{ID: "old", At: now.Add(-time.Minute)}),
		"junk": "{not json",
		"me":   figuresJSON(t, GatewayFigures{ID: "me", At: now, Clients: 99}), // this one's own: read first-hand instead
	}}
	var lat Window
	lat.Add(4 * time.Millisecond)
	d := &Dashboard{Instance: "me", Board: board, Latency: &lat,
		Gateway: fakeGateway{Clients: 3, Lag: 2, LastSeq: 9, CanaryLatency: 1500 * time.Microsecond, LastCanary: time.Now()},
		Health:  &Health{Role: "serve", Instance: "me", Store: "embedded", Outbox: section{"backlog": 5}, Gateway: section{}}}
	got := getData(t, d)
	if got.Instance != "me" || got.StreamLength == nil || *got.StreamLength != 42 || len(got.Errors) != 0 {
		t.Errorf("data %+v", got)
	}
	var ids []string
	for _, g := range got.Gateways {
		ids = append(ids, g.ID)
	}
	if mustJSON(t, ids) != `["0","b","me"]` {
		t.Fatalf("gateways %v, want 0, b, me (stale and junk left out, sorted)", ids)
	}
	me := got.Gateways[2]
	if me.Clients != 3 || me.Lag != 2 || me.LastSeq != 9 || me.CanaryLatencyMs != 1.5 || me.CanaryAgeS < 0 || me.P50Ms != 4 || me.P99Ms != 4 {
		t.Errorf("this gateway's figures %+v", me)
	}
	if got.Outbox["backlog"] != float64(5) {
		t.Errorf("outbox %v, want this process's", got.Outbox)
	}
	// No relay in this process: the key is there, null (the page shows "none").
	if r, ok := got.raw["relay"]; !ok || string(r) != "null" {
		t.Errorf("relay %s (present %v), want null", r, ok)
	}
}

// TestDataSaysWhatIsUnreachable: a Redis that does not answer and an api
// whose health cannot be read show as short codes, and the page still
// answers with this gateway's own figures.
func TestDataSaysWhatIsUnreachable(t *testing.T) {
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer dead.Close()
	d := &Dashboard{Instance: "g", Board: &fakeBoard{err: errors.New("dial tcp 10.0.0.1:6379: refused")}, Latency: &Window{},
		Gateway: fakeGateway{}, Health: &Health{Role: "gateway", Gateway: section{}}, APIAdminURL: dead.URL}
	got := getData(t, d)
	if mustJSON(t, got.Errors) != `["redis: unreachable","api: unreachable"]` {
		t.Errorf("errors %v", got.Errors)
	}
	if got.StreamLength != nil || len(got.Gateways) != 1 || got.Gateways[0].ID != "g" || got.Gateways[0].CanaryAgeS != -1 {
		t.Errorf("data %+v: want no length and this gateway alone, no canary yet", got)
	}
	for _, k := range []string{"outbox", "relay"} {
		if _, ok := got.raw[k]; ok {
			t.Errorf("%s shown though the api is unreachable: %s", k, got.raw[k])
		}
	}
}

// TestDataReadsTheAPIsHealth: a gateway without the store shows the api's
// outbox and relay, read from its /api/health.
func TestDataReadsTheAPIsHealth(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/health" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"role":"api","outbox":{"backlog":8},"relay":{"state":"leader"}}`))
	}))
	defer api.Close()
	d := &Dashboard{Instance: "g", Board: &fakeBoard{}, Latency: &Window{}, Gateway: fakeGateway{},
		Health: &Health{Role: "gateway", Gateway: section{}}, APIAdminURL: api.URL}
	got := getData(t, d)
	if got.Outbox["backlog"] != float64(8) || got.Relay["state"] != "leader" || len(got.Errors) != 0 {
		t.Errorf("data %+v, want the api's outbox and relay", got)
	}
}

// TestPublishSharesThisGatewaysFigures: Publish puts this gateway's
// figures on the board at once, keeps doing so, and stops with ctx.
func TestPublishSharesThisGatewaysFigures(t *testing.T) {
	board := &fakeBoard{}
	d := &Dashboard{Instance: "g7", Board: board, Latency: &Window{}, Gateway: fakeGateway{Clients: 4}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Publish(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, _ := board.Figures(ctx)
		var f GatewayFigures
		if raw, ok := all["g7"]; ok {
			if err := json.Unmarshal([]byte(raw), &f); err != nil {
				t.Fatal(err)
			}
			if f.ID != "g7" || f.Clients != 4 {
				t.Fatalf("published %+v", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing published")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Publish: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Publish did not stop with its context")
	}
}
