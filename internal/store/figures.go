package store

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The store's figures for the operator, next to the queries that make
// them: its section of /api/health (Health) and its Prometheus series
// (Collector). Both read the outbox when asked, so the write path pays
// nothing for them.

// Health is the outbox's section of /api/health: the backlog, the
// sequencer's lease and position, and the transaction retries. Only
// figures and short codes: a store error names addresses and a lease
// holder carries a process id, so those stay in the log.
func (s *Store) Health(ctx context.Context) map[string]any {
	ob := map[string]any{}
	if n, oldest, err := s.Backlog(ctx); err != nil {
		ob["error"] = "unavailable"
		s.opts.Logger.Warn("health: outbox backlog unreadable", "err", err)
	} else {
		ob["backlog"] = n
		if !oldest.IsZero() {
			ob["oldestPendingAgeSeconds"] = time.Since(oldest).Seconds()
		}
	}
	if seq, err := s.Sequencer(ctx); err == nil {
		ob["leaseHolder"], ob["epoch"], ob["seq"] = HolderInstance(seq.Holder), seq.Epoch, seq.Seq
	}
	ob["txnRetries"] = s.Retries()
	return ob
}

// HolderInstance is the instance id in a sequencer lease holder: holders
// are "<instance>-<pid>" (config.RelayOptions) so that two processes of
// one instance id never share a lease, and a process id is nobody's
// business outside the log. A holder in another form is returned whole.
func HolderInstance(holder string) string {
	i := strings.LastIndexByte(holder, '-')
	if i <= 0 || i == len(holder)-1 {
		return holder
	}
	for _, r := range holder[i+1:] {
		if r < '0' || r > '9' {
			return holder
		}
	}
	return holder[:i]
}

// scrapeTimeout bounds the queries one scrape makes: a store that does not
// answer shows as -1, it does not hang /metrics.
const scrapeTimeout = time.Second

// Collector returns the store's Prometheus series, read at scrape time:
// the outbox backlog and its oldest event's age (one store query for
// both) and the transaction retries.
func (s *Store) Collector() prometheus.Collector {
	return &collector{
		s: s,
		backlog: prometheus.NewDesc("pixelflow_outbox_backlog",
			"Outbox events not yet published (-1: store unreachable).", nil, nil),
		oldestAge: prometheus.NewDesc("pixelflow_outbox_oldest_pending_age_seconds",
			"Age of the oldest unpublished outbox event (0: none).", nil, nil),
		txnRetries: prometheus.NewDesc("pixelflow_store_txn_retries_total",
			"Store transactions retried after a transient error.", nil, nil),
	}
}

type collector struct {
	s                              *Store
	backlog, oldestAge, txnRetries *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.oldestAge
	ch <- c.txnRetries
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	backlog, age := -1.0, 0.0
	if n, oldest, err := c.s.Backlog(ctx); err == nil {
		backlog = float64(n)
		if !oldest.IsZero() {
			age = time.Since(oldest).Seconds()
		}
	}
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, backlog)
	ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(c.txnRetries, prometheus.CounterValue, float64(c.s.Retries()))
}
