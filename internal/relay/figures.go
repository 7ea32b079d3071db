package relay

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelflow/pixelflow/internal/store"
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
		"epochChanges": st.EpochChanges, "reconciled": st.Reconciled,
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

// Collector returns the relay's Prometheus series, read from Status at
// scrape time.
func (r *Relay) Collector() prometheus.Collector {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &collector{
		r:            r,
		published:    desc("pixelflow_relay_published_total", "Events the relay published to the stream."),
		batches:      desc("pixelflow_relay_batches_total", "Publish batches (published_total / batches_total is the mean batch size)."),
		transactions: desc("pixelflow_relay_store_transactions_total", "Store transactions the relay ran to claim and mark (store_transactions_total / batches_total is the store's cost per batch; a mark folded into the next claim shares its transaction)."),
		folded:       desc("pixelflow_relay_folded_marks_total", "Marks the relay folded into the transaction of its next claim (RELAY_MARK_DELAY)."),
		epochChanges: desc("pixelflow_relay_epoch_changes_total", "Stream epochs this relay started (Redis lost its data, or first start)."),
		reconciled:   desc("pixelflow_relay_reconciled_total", "Events found already in the stream and marked instead of republished."),
		leader:       desc("pixelflow_relay_leader", "1 while this relay holds the sequencer lease."),
	}
}

type collector struct {
	r                                                                          *Relay
	published, batches, transactions, folded, epochChanges, reconciled, leader *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.published, c.batches, c.transactions, c.folded, c.epochChanges, c.reconciled, c.leader} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Status()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.published, st.Published)
	counter(c.batches, st.Batches)
	counter(c.transactions, st.Transactions)
	counter(c.folded, st.Folded)
	counter(c.epochChanges, st.EpochChanges)
	counter(c.reconciled, st.Reconciled)
	leader := 0.0
	if st.State == "leader" {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader)
}
