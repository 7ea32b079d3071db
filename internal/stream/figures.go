package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
// scrape time: its length (-1 while Redis does not answer within a
// second, so a dead Redis does not hang /metrics).
func (s *Stream) Collector() prometheus.Collector {
	return &collector{s: s, length: prometheus.NewDesc("pixelflow_stream_length",
		"Entries in the Redis stream (-1: Redis unreachable).", nil, nil)}
}

type collector struct {
	s      *Stream
	length *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.length }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := c.s.Len(ctx)
	if err != nil {
		n = -1
	}
	ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(n))
}
