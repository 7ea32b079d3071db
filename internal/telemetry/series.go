package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ScrapeTimeout bounds the snapshot of one scrape: a store or Redis that
// does not answer leaves its series out of that scrape (see Series.Known);
// it does not hang /metrics.
const ScrapeTimeout = time.Second

// Series is one unlabelled Prometheus series of a Snapshot: its value is
// read from the snapshot of type T the collector takes per scrape.
type Series[T any] struct {
	Name, Help string
	Type       prometheus.ValueType // prometheus.GaugeValue or CounterValue
	Value      func(T) float64
	// Known, when set, says whether the snapshot has a value for this
	// series; a series that is not known is left out of the scrape. An
	// absent series is Prometheus's way to say unknown: a sentinel value
	// such as -1 would be summed over instances and trip alerts.
	Known func(T) bool
}

// Snapshot is a collector for a component's figures: at each scrape it
// takes one snapshot (read: a Stats call, one store or Redis query, given
// ScrapeTimeout) and
// reports every series from it, so the series agree with each other and
// the snapshot is paid once per scrape, not once per series. A component
// lists its series instead of writing a collector.
func Snapshot[T any](read func(context.Context) T, series ...Series[T]) prometheus.Collector {
	c := &snapshot[T]{read: read, series: series, descs: make([]*prometheus.Desc, len(series))}
	for i, s := range series {
		c.descs[i] = prometheus.NewDesc(s.Name, s.Help, nil, nil)
	}
	return c
}

type snapshot[T any] struct {
	read   func(context.Context) T
	series []Series[T]
	descs  []*prometheus.Desc
}

func (c *snapshot[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *snapshot[T]) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	v := c.read(ctx)
	for i, s := range c.series {
		if s.Known != nil && !s.Known(v) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], s.Type, s.Value(v))
	}
}

// Collectors is several collectors registered as one (a component's
// snapshot series and its histograms).
type Collectors []prometheus.Collector

// Describe describes every collector's series.
func (cs Collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect collects every collector's series.
func (cs Collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
