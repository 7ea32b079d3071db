package chaos

import (
	"context"
	"sync"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
)

// sampler records the timeline: one Point per tick, and a progress line
// each second.
type sampler struct {
	api    string
	w      *cluster.Watchers
	lat    *latencies
	writer *cluster.Writer
	start  time.Time
	tick   time.Duration

	mu  sync.Mutex
	pts []Point
	raw []rawSample
}

type rawSample struct {
	at               time.Time
	acked, delivered int64
}

func newSampler(api string, w *cluster.Watchers, lat *latencies, writer *cluster.Writer, start time.Time, tick time.Duration) *sampler {
	return &sampler{api: api, w: w, lat: lat, writer: writer, start: start, tick: tick}
}

func (s *sampler) run(ctx context.Context, logf func(string, ...any), name string) {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	prev := rawSample{at: time.Now(), acked: int64(s.writer.Acked()), delivered: s.w.Delivered()}
	s.mu.Lock()
	s.raw = append(s.raw, prev)
	s.mu.Unlock()
	lastLog := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := rawSample{at: now, acked: int64(s.writer.Acked()), delivered: s.w.Delivered()}
			backlog, err := cluster.Backlog(ctx, s.api)
			if err != nil {
				backlog = -1
			}
			dt := cur.at.Sub(prev.at).Seconds()
			p := Point{
				T:         now.Sub(s.start).Seconds(),
				Committed: float64(cur.acked-prev.acked) / dt,
				Delivered: float64(cur.delivered-prev.delivered) / dt,
				Backlog:   backlog,
				P99:       quantile(s.lat.between(prev.at, cur.at, false), 0.99),
			}
			s.mu.Lock()
			s.pts = append(s.pts, p)
			s.raw = append(s.raw, cur)
			s.mu.Unlock()
			prev = cur
			if now.Sub(lastLog) >= time.Second {
				lastLog = now
				logf("%s t=%5.1fs writes/s=%6.0f delivered/s=%7.0f backlog=%5d p99=%6.1fms", name, p.T, p.Committed, p.Delivered, p.Backlog, p.P99)
			}
		}
	}
}

func (s *sampler) points() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Point(nil), s.pts...)
}

// rates returns acknowledged writes/s and delivered events/s between two
// instants, from the raw counters nearest to them.
func (s *sampler) rates(from, to time.Time) (writes, delivered float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a, b *rawSample
	for i := range s.raw {
		r := &s.raw[i]
		if a == nil && !r.at.Before(from) {
			a = r
		}
		if !r.at.After(to) {
			b = r
		}
	}
	if a == nil || b == nil || !b.at.After(a.at) {
		return 0, 0
	}
	secs := b.at.Sub(a.at).Seconds()
	return float64(b.acked-a.acked) / secs, float64(b.delivered-a.delivered) / secs
}

// maxBacklog is the largest backlog sampled in [from, to).
func (s *sampler) maxBacklog(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, b := from.Sub(s.start).Seconds(), to.Sub(s.start).Seconds()
	peak := 0
	for _, p := range s.pts {
		if p.T >= a && p.T < b {
			peak = max(peak, p.Backlog)
		}
	}
	return peak
}
