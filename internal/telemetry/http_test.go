package telemetry_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// TestInstrumentHTTPCountsRequestsNotSessions: requests are counted and
// timed by method, status and route; /ws (a WebSocket session, hours
// long) is served but neither counted nor timed. The route is the pattern
// of the innermost mux wrapped in RecordRoute, even when a handler between
// serves a copy of the request (as otelhttp does), else the outer mux's;
// a path no pattern matches is "unmatched", never the path itself.
func TestInstrumentHTTPCountsRequestsNotSessions(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	inner := http.NewServeMux()
	inner.HandleFunc("POST /api/pixels", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	inner.HandleFunc("GET /api/canvas", func(w http.ResponseWriter, r *http.Request) {})
	routed := telemetry.RecordRoute(inner)
	mux := http.NewServeMux()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		routed.ServeHTTP(w, r.WithContext(r.Context())) // a copy, as otelhttp serves
	}))
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {})
	served := 0
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { served++ })
	var logged bytes.Buffer
	h := telemetry.InstrumentHTTP(reg, telemetry.NewLogger(&logged, slog.LevelDebug, telemetry.JSONLogs), mux)
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/pixels", nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/canvas", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/app.js", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nowhere", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/ws", nil))
	if served != 1 {
		t.Fatalf("/ws served %d times, want 1", served)
	}
	// The access log: one DEBUG line per counted request, none for /ws.
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("access log has %d lines, want 6 (not /ws):\n%s", len(lines), logged.String())
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[5]), &last); err != nil {
		t.Fatal(err)
	}
	if last["msg"] != "request" || last["level"] != "DEBUG" || last["path"] != "/nowhere" || last["route"] != "unmatched" || last["status"] != 404.0 || last["took_s"] == nil {
		t.Errorf("access line %v: want DEBUG request /nowhere unmatched 404 with took_s", last)
	}
	quiet := telemetry.InstrumentHTTP(prometheus.NewRegistry(), telemetry.NewLogger(&logged, slog.LevelInfo, telemetry.JSONLogs), mux)
	logged.Reset()
	quiet.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/app.js", nil))
	if logged.Len() != 0 {
		t.Errorf("access log at INFO: %s", logged.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]map[string]float64{} // family → "method code" → count
	for _, mf := range mfs {
		counts[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			switch {
			case m.Counter != nil:
				counts[mf.GetName()][key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				counts[mf.GetName()][key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{"code=201 method=post route=/api/pixels ": 3, "code=200 method=get route=/api/canvas ": 1,
		"code=200 method=get route=/app.js ": 1, "code=404 method=get route=unmatched ": 1}
	for _, family := range []string{"pixelflow_http_requests_total", "pixelflow_http_request_duration_seconds"} {
		got := counts[family]
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v (/ws not counted)", family, got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s{%s} = %v, want %v", family, k, got[k], n)
			}
		}
	}
}
