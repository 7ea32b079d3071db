package stream

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// The stream's figures for the operator: its length on /metrics, and the
// hash (Keys.Ops) where each gateway leaves its dashboard figures so that
// any gateway's /ops shows all of them. The figures are opaque here: the
// dashboard (internal/ops) encodes and reads them.

// PutFigures stores gateway instance's dashboard figures, replacing the
// ones it put before.
func (s *Stream) PutFigures(ctx context.Context, instance string, figures []byte) error {
	if err := s.rdb.HSet(ctx, s.keys.Ops, instance, figures).Err(); err != nil {
		return fmt.Errorf("put dashboard figures: %w", err)
	}
	return nil
}

// Figures returns every gateway's last dashboard figures by instance id,
// however old (the figures carry their own time).
func (s *Stream) Figures(ctx context.Context) (map[string]string, error) {
	all, err := s.rdb.HGetAll(ctx, s.keys.Ops).Result()
	if err != nil {
		return nil, fmt.Errorf("read dashboard figures: %w", err)
	}
	return all, nil
}

// Collector returns the stream's Prometheus series, read from Redis at
// scrape time: its length, left out of a scrape while Redis does not
// answer within telemetry.ScrapeTimeout.
func (s *Stream) Collector() prometheus.Collector {
	type length struct {
		n     int64
		known bool
	}
	read := func(ctx context.Context) length {
		n, err := s.Len(ctx)
		return length{n, err == nil}
	}
	return telemetry.Snapshot(read, telemetry.Series[length]{Name: "pixelflow_stream_length",
		Help: "Entries in the Redis stream (absent while Redis does not answer).", Type: prometheus.GaugeValue,
		Value: func(l length) float64 { return float64(l.n) }, Known: func(l length) bool { return l.known }})
}
