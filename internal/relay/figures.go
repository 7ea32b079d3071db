package relay

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// The relay's figures for the operator, next to the status that makes
// them: its section of /api/health (Health) and its Prometheus series
// (Collector). Both read Status when asked, so publishing pays nothing
// for them.

// Health is the relay's section of /api/health. Only figures and short
// codes: an error names addresses and a lease holder carries a process
// id, so those stay in the log.
func (r *Relay) Health(context.Context) map[string]any {
	st := r.Status()
	rl := map[string]any{
		"state": st.State, "holder": store.HolderInstance(st.Holder), "leader": store.HolderInstance(st.Leader),
		"epoch": st.Epoch, "seq": st.Seq, "published": st.Published, "batches": st.Batches,
		"epochChanges": st.EpochChanges, "reconciled": st.Reconciled, "notReplicated": st.NotReplicated,
		"transactions": st.Transactions, "folded": st.Folded,
	}
	if !st.LastPublishAt.IsZero() {
		rl["lastPublishAt"] = st.LastPublishAt
	}
	if st.LastError != "" {
		rl["error"], rl["lastErrorAt"] = "failing", st.LastErrorAt
	}
	return rl
}

// Collector returns the relay's Prometheus series, read from one Status
// at each scrape.
func (r *Relay) Collector() prometheus.Collector {
	counter := func(name, help string, v func(Status) int64) telemetry.Series[Status] {
		return telemetry.Series[Status]{Name: name, Help: help, Type: prometheus.CounterValue, Value: func(s Status) float64 { return float64(v(s)) }}
	}
	return telemetry.Snapshot(func(context.Context) Status { return r.Status() },
		counter("pixelflow_relay_published_total", "Events the relay published to the stream.", func(s Status) int64 { return s.Published }),
		counter("pixelflow_relay_batches_total", "Publish batches (published_total / batches_total is the mean batch size).", func(s Status) int64 { return s.Batches }),
		counter("pixelflow_relay_store_transactions_total", "Store transactions the relay ran to claim and mark (store_transactions_total / batches_total is the store's cost per batch; a mark folded into the next claim shares its transaction).", func(s Status) int64 { return s.Transactions }),
		counter("pixelflow_relay_folded_marks_total", "Marks the relay folded into the transaction of its next claim (RELAY_MARK_DELAY).", func(s Status) int64 { return s.Folded }),
		counter("pixelflow_relay_epoch_changes_total", "Stream epochs this relay started (Redis lost its data, or first start).", func(s Status) int64 { return s.EpochChanges }),
		counter("pixelflow_relay_marks_not_replicated_total", "Marks held back because fewer than REDIS_WAIT_REPLICAS replicas acknowledged the entries within REDIS_WAIT_TIMEOUT (each is retried).", func(s Status) int64 { return s.NotReplicated }),
		counter("pixelflow_relay_reconciled_total", "Events found already in the stream and marked instead of republished.", func(s Status) int64 { return s.Reconciled }),
		telemetry.Series[Status]{Name: "pixelflow_relay_leader", Help: "1 while this relay holds the sequencer lease.", Type: prometheus.GaugeValue,
			Value: func(s Status) float64 {
				if s.State == "leader" {
					return 1
				}
				return 0
			}},
	)
}
