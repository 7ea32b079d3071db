package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/felixge/httpsnoop"
	"github.com/prometheus/client_golang/prometheus"
)

// InstrumentHTTP counts h's requests and times them by method, status and
// route in reg (pixelflow_http_requests_total,
// pixelflow_http_request_duration_seconds). /ws is passed through
// untimed: a WebSocket session is hijacked and lasts hours, so it is not
// a request whose time means anything.
//
// The route is the pattern of the ServeMux that served the request,
// without its method ("/api/pixels"), so a dashboard can tell a slow
// canvas read from a slow write: the innermost mux wrapped in
// RecordRoute, else h's own when h is a ServeMux; "unmatched" when no
// pattern matched. Patterns are few and fixed, so the label's values are
// bounded whatever paths clients send.
//
// With log enabled at DEBUG, every request is also one "request" line
// (an access log): method, path, route, status, bytes written, took_s.
func InstrumentHTTP(reg prometheus.Registerer, log *slog.Logger, h http.Handler) http.Handler {
	labels := []string{"method", "code", "route"}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pixelflow_http_requests_total", Help: "HTTP requests by method, status and route."}, labels)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pixelflow_http_request_duration_seconds", Help: "HTTP request time by method, status and route (WebSocket sessions excluded).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1}}, labels)
	reg.MustRegister(requests, duration)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			h.ServeHTTP(w, r)
			return
		}
		rt := &route{}
		ctx := context.WithValue(r.Context(), routeKey{}, rt)
		served := r.WithContext(ctx)
		m := httpsnoop.CaptureMetrics(h, w, served)
		if !rt.set {
			rt.pattern = served.Pattern
		}
		l := prometheus.Labels{"method": strings.ToLower(r.Method), "code": strconv.Itoa(m.Code), "route": routeLabel(rt.pattern)}
		requests.With(l).Inc()
		duration.With(l).Observe(m.Duration.Seconds())
		if log != nil && log.Enabled(ctx, slog.LevelDebug) {
			log.LogAttrs(ctx, slog.LevelDebug, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("route", l["route"]), slog.Int("status", m.Code), slog.Int64("bytes", m.Written), slog.Duration("took", m.Duration))
		}
	})
}

// RecordRoute wraps a ServeMux (or a handler around one) inside the
// handler InstrumentHTTP wraps, so the route label names its pattern: a
// handler between the two may serve a copy of the request (WithContext),
// whose Pattern the outer one never sees. The innermost RecordRoute wins.
func RecordRoute(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if rt, ok := r.Context().Value(routeKey{}).(*route); ok && !rt.set {
			rt.pattern, rt.set = r.Pattern, true
		}
	})
}

type routeKey struct{}

// route is the pattern a RecordRoute saw; set once one has.
type route struct {
	pattern string
	set     bool
}

// routeLabel is a pattern without its method and host, "/{$}" as "/".
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimSpace(path)
	}
	if i := strings.Index(pattern, "/"); i > 0 {
		pattern = pattern[i:] // a host pattern: the host is not a route
	}
	if p := strings.TrimSuffix(pattern, "{$}"); p != "" {
		return p
	}
	return pattern
}
