package telemetry

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// InstrumentHTTP counts h's requests and times them by method and status
// in reg (pixelflow_http_requests_total,
// pixelflow_http_request_duration_seconds). /ws is passed through
// untimed: a WebSocket session is hijacked and lasts hours, so it is not
// a request whose time means anything.
func InstrumentHTTP(reg prometheus.Registerer, h http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pixelflow_http_requests_total", Help: "HTTP requests by method and status."}, []string{"method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pixelflow_http_request_duration_seconds", Help: "HTTP request time by method and status (WebSocket sessions excluded).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1}}, []string{"method", "code"})
	reg.MustRegister(requests, duration)
	counted := promhttp.InstrumentHandlerCounter(requests, h)
	timed := promhttp.InstrumentHandlerDuration(duration, counted)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			h.ServeHTTP(w, r)
			return
		}
		timed.ServeHTTP(w, r)
	})
}
