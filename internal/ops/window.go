package ops

import (
	"sync"
	"time"

	"github.com/pixelflow/pixelflow/internal/quantiles"
)

// Window keeps the last commit → broadcast latencies for the dashboard's
// P50/P99 over the last seconds. The gateway's Prometheus histogram keeps
// the totals since start; a histogram cannot answer "the last ten
// seconds", which is what the dashboard shows. The zero Window is ready.
type Window struct {
	mu  sync.Mutex
	at  []time.Time
	d   []time.Duration
	pos int
	// now is the clock (nil: time.Now); tests set it.
	now func() time.Time
}

func (w *Window) clock() time.Time {
	if w.now == nil {
		return time.Now()
	}
	return w.now()
}

// windowSize bounds the samples kept: at high rates the window covers
// less than its `within`, which only makes the quantiles more recent.
const windowSize = 4096

// Add records one latency, now (gateway.Options.OnBroadcast).
func (w *Window) Add(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clock()
	if len(w.d) < windowSize {
		w.d, w.at = append(w.d, d), append(w.at, now)
		return
	}
	w.d[w.pos], w.at[w.pos] = d, now
	w.pos = (w.pos + 1) % windowSize
}

// Quantiles returns P50 and P99 in milliseconds of the samples of the last
// `within` (0, 0 without samples).
func (w *Window) Quantiles(within time.Duration) (p50, p99 float64) {
	w.mu.Lock()
	var ds []time.Duration
	cut := w.clock().Add(-within)
	for i, d := range w.d {
		if w.at[i].After(cut) {
			ds = append(ds, d)
		}
	}
	w.mu.Unlock()
	q := quantiles.Millis(ds, 0.50, 0.99)
	return q[0], q[1]
}
