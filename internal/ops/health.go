// Package ops is what an operator reads of a running process: the
// /api/health report and the /ops dashboard's data (GET /ops/data), with
// the dashboard's commit → broadcast window and the publisher that shares
// each gateway's figures with the others.
//
// It owns no figures itself: each component reports its own (store,
// relay and gateway each have a Health section and a Prometheus
// collector, next to the counters that make them), and this package only
// asks them through the small interfaces below and puts the answers on
// one page. cmd/pixelflow wires the components in.
package ops

import "context"

// Section is a component's part of /api/health: store.Store (the outbox),
// relay.Relay and gateway.Gateway. Only figures and short codes: errors
// name addresses and internals, so they stay in the component's log.
type Section interface {
	Health(ctx context.Context) map[string]any
}

// Health is one process's /api/health report: its role and instance, and
// a section from each component it runs (a nil Section is a component
// this process does not run, left out of the report).
type Health struct {
	Role, Instance string
	// Store names the store's engine ("embedded" or "mongodb"), shown
	// with the outbox.
	Store string
	// Outbox is the store's section (the outbox and its sequencer).
	Outbox  Section
	Relay   Section
	Gateway Section
}

// Report is /api/health: {"role", "instance", "store", "outbox", "relay",
// "gateway"}, every key lowerCamel (docs/api.md).
func (h *Health) Report(ctx context.Context) map[string]any {
	out := map[string]any{"role": h.Role, "instance": h.Instance}
	if h.Outbox != nil {
		out["outbox"] = h.Outbox.Health(ctx)
		out["store"] = h.Store
	}
	if h.Relay != nil {
		out["relay"] = h.Relay.Health(ctx)
	}
	if h.Gateway != nil {
		out["gateway"] = h.Gateway.Health(ctx)
	}
	return out
}
