package chaos

import (
	"sync"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// latencies keeps every pixel event's commit → receive time for a drill's
// phases and timeline (a drill is seconds long, so keeping them all is
// cheap; the load test keeps histograms instead).
type latencies struct {
	mu      sync.Mutex
	samples []latency // in arrival order per client
	ignored map[int]bool
}

type latency struct {
	at     time.Time
	d      time.Duration
	client int
}

// watch makes each client report its events here too, and ask for the
// commit time the latencies are measured from (events carry it only on
// request).
func (l *latencies) watch() cluster.WatchOption {
	return func(i int, o *client.Options) {
		o.Fields = append(o.Fields, protocol.FieldCommittedAt)
		next := o.OnEvent
		o.OnEvent = func(r client.Received) {
			next(r)
			l.record(i, r)
		}
	}
}

func (l *latencies) record(i int, r client.Received) {
	if r.Event.Kind == canvas.KindCanary || r.Dup {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ignored[i] {
		l.samples = append(l.samples, latency{at: r.ReceivedAt, d: r.ReceivedAt.Sub(r.Event.CommittedAt), client: i})
	}
}

// ignore leaves client i's events out from now on (a client that a drill
// makes slow on purpose).
func (l *latencies) ignore(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ignored == nil {
		l.ignored = map[int]bool{}
	}
	l.ignored[i] = true
}

// between returns the commit → receive times of events that arrived in
// [from, to). With committedSince set, only events also committed in the
// window count: a republish after a fault delivers old events again, and
// their age says nothing about how fast the system is now.
func (l *latencies) between(from, to time.Time, committedSince bool) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Duration
	for _, s := range l.samples {
		if !s.at.Before(from) && s.at.Before(to) && (!committedSince || !s.at.Add(-s.d).Before(from)) && !l.ignored[s.client] {
			out = append(out, s.d)
		}
	}
	return out
}
