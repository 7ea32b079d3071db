package store

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/telemetry"
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
// are "<instance>-<pid>.<nonce>" (config.RelayOptions; older releases
// wrote "<instance>-<pid>") so that no two process starts share a lease,
// and a process id is nobody's business outside the log. A holder in
// another form is returned whole.
func HolderInstance(holder string) string {
	i := strings.LastIndexByte(holder, '-')
	if i <= 0 || i == len(holder)-1 {
		return holder
	}
	pid, nonce, dotted := strings.Cut(holder[i+1:], ".")
	if !digits(pid) || dotted && !hexDigits(nonce) {
		return holder
	}
	return holder[:i]
}

func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func hexDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// Collector returns the store's Prometheus series, read at scrape time:
// the outbox backlog and its oldest event's age (one store query for
// both; -1 when the store does not answer within telemetry.ScrapeTimeout)
// and the transaction retries.
func (s *Store) Collector() prometheus.Collector {
	type figures struct{ backlog, age, retries float64 }
	read := func(ctx context.Context) figures {
		f := figures{backlog: -1, retries: float64(s.Retries())}
		if n, oldest, err := s.Backlog(ctx); err == nil {
			f.backlog = float64(n)
			if !oldest.IsZero() {
				f.age = time.Since(oldest).Seconds()
			}
		}
		return f
	}
	return telemetry.Snapshot(read,
		telemetry.Series[figures]{Name: "pixelflow_outbox_backlog", Help: "Outbox events not yet published (-1: store unreachable).",
			Type: prometheus.GaugeValue, Value: func(f figures) float64 { return f.backlog }},
		telemetry.Series[figures]{Name: "pixelflow_outbox_oldest_pending_age_seconds", Help: "Age of the oldest unpublished outbox event (0: none).",
			Type: prometheus.GaugeValue, Value: func(f figures) float64 { return f.age }},
		telemetry.Series[figures]{Name: "pixelflow_store_txn_retries_total", Help: "Store transactions retried after a transient error.",
			Type: prometheus.CounterValue, Value: func(f figures) float64 { return f.retries }},
	)
}
