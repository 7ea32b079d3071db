package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pixelflow/pixelflow/internal/quantiles"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The /ops dashboard reads GET /ops/data once a second: the same numbers as
// /metrics, gathered for one page. Each gateway publishes its own figures
// to a Redis hash every two seconds, so any gateway's dashboard shows all
// of them; the outbox and relay figures come from the store's process (this
// one under `serve`, else the api's /api/health through API_URL).

// latencyWindow keeps the last commit → broadcast latencies for the
// dashboard's P50/P99 (the Prometheus histogram keeps the totals).
type latencyWindow struct {
	mu  sync.Mutex
	at  []time.Time
	d   []time.Duration
	pos int
}

const windowSize = 4096

func (w *latencyWindow) add(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.d) < windowSize {
		w.d, w.at = append(w.d, d), append(w.at, time.Now())
		return
	}
	w.d[w.pos], w.at[w.pos] = d, time.Now()
	w.pos = (w.pos + 1) % windowSize
}

// quantiles returns P50 and P99 in milliseconds of the samples of the last
// `within` (0, 0 without samples).
func (w *latencyWindow) quantiles(within time.Duration) (p50, p99 float64) {
	w.mu.Lock()
	var ds []time.Duration
	cut := time.Now().Add(-within)
	for i, d := range w.d {
		if w.at[i].After(cut) {
			ds = append(ds, d)
		}
	}
	w.mu.Unlock()
	q := quantiles.Millis(ds, 0.50, 0.99)
	return q[0], q[1]
}

// gatewayFigures is what one gateway publishes for the dashboard.
type gatewayFigures struct {
	ID              string    `json:"id"`
	At              time.Time `json:"at"`
	Clients         int       `json:"clients"`
	Lag             int64     `json:"lag"`
	Degraded        int64     `json:"degraded"`
	Resyncs         int64     `json:"resyncs"`
	LastSeq         uint64    `json:"lastSeq"`
	CanaryLatencyMs float64   `json:"canaryLatencyMs"`
	CanaryAgeS      float64   `json:"canaryAgeSeconds"` // -1: none yet
	P50Ms           float64   `json:"commitToBroadcastP50Ms"`
	P99Ms           float64   `json:"commitToBroadcastP99Ms"`
}

func (m *Main) opsKey() string { return stream.KeysFor(m.Config.Canvas).Ops }

func (m *Main) gatewayFigures() gatewayFigures {
	s := m.gateway.Stats()
	f := gatewayFigures{ID: m.Config.InstanceID, At: time.Now().UTC(), Clients: s.Clients, Lag: s.Lag, Degraded: s.Degraded,
		Resyncs: s.Resyncs, LastSeq: s.LastSeq, CanaryLatencyMs: float64(s.CanaryLatency.Microseconds()) / 1000, CanaryAgeS: -1}
	if !s.LastCanary.IsZero() {
		f.CanaryAgeS = time.Since(s.LastCanary).Seconds()
	}
	f.P50Ms, f.P99Ms = m.latency.quantiles(10 * time.Second)
	return f
}

// publishFigures writes this gateway's figures to Redis every 2 s until ctx
// ends; a failed write is retried at the next tick (the dashboard shows
// the figures' age).
func (m *Main) publishFigures(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		b, _ := json.Marshal(m.gatewayFigures())
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = m.redis.HSet(wctx, m.opsKey(), m.Config.InstanceID, b).Err()
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// handleOpsData answers GET /ops/data.
func (m *Main) handleOpsData(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	out := map[string]any{"at": time.Now().UTC(), "instance": m.Config.InstanceID}
	var errs []string
	// Stream
	key := stream.KeysFor(m.Config.Canvas).Stream
	if n, err := m.redis.XLen(ctx, key).Result(); err != nil {
		errs = append(errs, "redis: unreachable")
		m.Logger.Warn("ops: stream length unreadable", "err", err)
	} else {
		out["streamLength"] = n
	}
	// Gateways, this one first-hand.
	gws := []gatewayFigures{m.gatewayFigures()}
	if all, err := m.redis.HGetAll(ctx, m.opsKey()).Result(); err == nil {
		for id, raw := range all {
			var f gatewayFigures
			if id == m.Config.InstanceID || json.Unmarshal([]byte(raw), &f) != nil || time.Since(f.At) > 30*time.Second {
				continue
			}
			gws = append(gws, f)
		}
	}
	slices.SortFunc(gws, func(a, b gatewayFigures) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	out["gateways"] = gws
	// Outbox and relay: here, or from the api.
	if m.store != nil {
		h := m.health(ctx)
		out["outbox"], out["relay"] = h["outbox"], h["relay"]
	} else if m.Config.APIAdminURL != "" {
		if h, err := fetchHealth(ctx, m.Config.APIAdminURL); err != nil {
			errs = append(errs, "api: unreachable")
			m.Logger.Warn("ops: api health unreadable", "url", m.Config.APIAdminURL, "err", err)
		} else {
			out["outbox"], out["relay"] = h["outbox"], h["relay"]
		}
	}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

func fetchHealth(ctx context.Context, base string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/health", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/api/health: %s", resp.Status)
	}
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("/api/health: %w", err)
	}
	return h, nil
}
