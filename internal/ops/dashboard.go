package ops

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/pixelflow/pixelflow/internal/gateway"
)

// The /ops dashboard reads GET /ops/data once a second: the same numbers as
// /metrics, gathered for one page. Each gateway publishes its own figures
// to Redis every two seconds (Dashboard.Publish), so any gateway's
// dashboard shows all of them; the outbox and relay figures come from the
// store's process (this one under `serve`, else the api's /api/health
// through API_ADMIN_URL, default API_URL).

// Gateway is the gateway whose figures the dashboard shows first-hand
// (gateway.Gateway).
type Gateway interface {
	Stats() gateway.Stats
}

// Board is the stream's Redis, where the dashboard reads the stream's
// length and the gateways leave their figures for each other
// (stream.Stream: it owns the keys).
type Board interface {
	Len(ctx context.Context) (int64, error)
	PutFigures(ctx context.Context, instance string, figures []byte) error
	Figures(ctx context.Context) (map[string]string, error)
}

const (
	// publishEvery is how often a gateway shares its figures.
	publishEvery = 2 * time.Second
	// staleAfter drops a gateway's figures from the page: a gateway that
	// stopped (or was reaped) stops publishing, its figures stay in Redis.
	staleAfter = 30 * time.Second
	// quantileWindow is the span the dashboard's P50/P99 cover.
	quantileWindow = 10 * time.Second
)

// Dashboard is one gateway's /ops data: GET /ops/data (ServeHTTP) and the
// publisher of its own figures (Publish).
type Dashboard struct {
	// Instance is this process's INSTANCE_ID: its figures' field on the
	// board.
	Instance string
	Gateway  Gateway
	Board    Board
	// Latency is fed by the gateway (gateway.Options.OnBroadcast).
	Latency *Window
	// Health is this process's report: its outbox and relay sections are
	// shown when it runs the store.
	Health *Health
	// APIAdminURL is where the api's /api/health is read when this
	// process has no store ("" leaves the outbox and relay out).
	APIAdminURL string
	Logger      *slog.Logger
}

// GatewayFigures is what one gateway publishes for the dashboard.
type GatewayFigures struct {
	ID            string    `json:"id"`
	At            time.Time `json:"at"`
	Clients       int       `json:"clients"`
	RegionClients int       `json:"regionClients"`
	// TopRegions: the regions most clients of this gateway hold.
	TopRegions      []gateway.RegionCount `json:"topRegions"`
	Lag             int64                 `json:"lag"`
	Degraded        int64                 `json:"degraded"`
	Resyncs         int64                 `json:"resyncs"`
	LastSeq         uint64                `json:"lastSeq"`
	CanaryLatencyMs float64               `json:"canaryLatencyMs"`
	CanaryAgeS      float64               `json:"canaryAgeSeconds"` // -1: none yet
	P50Ms           float64               `json:"commitToBroadcastP50Ms"`
	P99Ms           float64               `json:"commitToBroadcastP99Ms"`
}

// Figures returns this gateway's figures, now.
func (d *Dashboard) Figures() GatewayFigures {
	s := d.Gateway.Stats()
	f := GatewayFigures{ID: d.Instance, At: time.Now().UTC(), Clients: s.Clients, RegionClients: s.RegionClients, TopRegions: s.TopRegions, Lag: s.Lag, Degraded: s.Degraded,
		Resyncs: s.Resyncs, LastSeq: s.LastSeq, CanaryLatencyMs: float64(s.CanaryLatency.Microseconds()) / 1000, CanaryAgeS: -1}
	if !s.LastCanary.IsZero() {
		f.CanaryAgeS = time.Since(s.LastCanary).Seconds()
	}
	f.P50Ms, f.P99Ms = d.Latency.Quantiles(quantileWindow)
	return f
}

// Publish writes this gateway's figures to the board every two seconds
// until ctx ends; a failed write is retried at the next tick (the
// dashboard shows the figures' age).
func (d *Dashboard) Publish(ctx context.Context) error {
	t := time.NewTicker(publishEvery)
	defer t.Stop()
	for {
		if b, err := json.Marshal(d.Figures()); err != nil {
			d.logger().Warn("ops: figures unencodable", "err", err)
		} else {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = d.Board.PutFigures(wctx, d.Instance, b)
			cancel()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ServeHTTP answers GET /ops/data: {"at", "instance", "streamLength",
// "gateways" (sorted by id, this one first-hand), "outbox", "relay",
// "errors" (short codes: "redis: unreachable", "api: unreachable")}.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	out := map[string]any{"at": time.Now().UTC(), "instance": d.Instance}
	var errs []string
	if n, err := d.Board.Len(ctx); err != nil {
		errs = append(errs, "redis: unreachable")
		d.logger().Warn("ops: stream length unreadable", "err", err)
	} else {
		out["streamLength"] = n
	}
	gws := []GatewayFigures{d.Figures()}
	if all, err := d.Board.Figures(ctx); err == nil {
		for id, raw := range all {
			var f GatewayFigures
			if id == d.Instance || json.Unmarshal([]byte(raw), &f) != nil || time.Since(f.At) > staleAfter {
				continue
			}
			gws = append(gws, f)
		}
	}
	slices.SortFunc(gws, func(a, b GatewayFigures) int { return cmp.Compare(a.ID, b.ID) })
	out["gateways"] = gws
	// Outbox and relay: here, or from the api.
	if d.Health != nil && d.Health.Outbox != nil {
		h := d.Health.Report(ctx)
		out["outbox"], out["relay"] = h["outbox"], h["relay"]
	} else if d.APIAdminURL != "" {
		if h, err := fetchHealth(ctx, d.APIAdminURL); err != nil {
			errs = append(errs, "api: unreachable")
			d.logger().Warn("ops: api health unreadable", "url", d.APIAdminURL, "err", err)
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

func (d *Dashboard) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.Default()
	}
	return d.Logger
}

// fetchHealth reads the /api/health report of the process at base.
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
