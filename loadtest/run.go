package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/pace"
	"github.com/pixelflow/pixelflow/internal/harness/procstat"
	"github.com/pixelflow/pixelflow/internal/harness/report"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// newHist records microseconds from 1 µs to 5 minutes, 3 significant digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 300_000_000, 3) }

// meter collects what the clients see: a histogram for the whole run, one
// per second for the time series, and the stage timings.
type meter struct {
	mu        sync.Mutex
	delivery  *hdrhistogram.Histogram // commit → client receive
	second    *hdrhistogram.Histogram // the same, this second only
	toPublish *hdrhistogram.Histogram // commit → relay XADD
	toClient  *hdrhistogram.Histogram // relay XADD → client receive
	http      *hdrhistogram.Histogram // write scheduled → 201
	fromSend  *hdrhistogram.Histogram // write sent → client receive (the side-by-side harness's latency)
	sent      *sendTimes
	// steps: capacity's histogram per rate step, by the commit time.
	stepHists []*hdrhistogram.Histogram
	stepStart []time.Time
}

func newMeter() *meter {
	return &meter{delivery: newHist(), second: newHist(), toPublish: newHist(), toClient: newHist(), http: newHist(), fromSend: newHist()}
}

func (m *meter) observe(r client.Received) {
	if r.Event.Kind == canvas.KindCanary || r.Dup {
		return
	}
	var fromSend int64 = -1
	var sentAt time.Time
	if m.sent != nil {
		if at := m.sent.at(r.Event.Color); at != 0 {
			fromSend = r.ReceivedAt.UnixNano() - at
			sentAt = time.Unix(0, at)
		}
	}
	// The delivery latency runs from the commit when the events carry it
	// (-wire timed), else from the write's send (-wire json, binary).
	var d int64
	from := r.Event.CommittedAt
	switch {
	case !from.IsZero():
		d = r.ReceivedAt.Sub(from).Microseconds()
	case fromSend >= 0:
		d, from = fromSend/1000, sentAt
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if fromSend >= 0 {
		_ = m.fromSend.RecordValue(max(fromSend/1000, 1))
	}
	if from.IsZero() { // a write this run did not send: no start to measure from
		return
	}
	_ = m.delivery.RecordValue(max(d, 1))
	_ = m.second.RecordValue(max(d, 1))
	if !r.PublishedAt.IsZero() && !r.Event.CommittedAt.IsZero() {
		_ = m.toPublish.RecordValue(max(r.PublishedAt.Sub(r.Event.CommittedAt).Microseconds(), 1))
		_ = m.toClient.RecordValue(max(r.ReceivedAt.Sub(r.PublishedAt).Microseconds(), 1))
	}
	for i := len(m.stepStart) - 1; i >= 0; i-- {
		if !from.Before(m.stepStart[i]) {
			_ = m.stepHists[i].RecordValue(max(d, 1))
			break
		}
	}
}

// rollSecond returns this second's P99 (ms) and starts the next second.
func (m *meter) rollSecond() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	p99 := ms(m.second.ValueAtQuantile(99))
	m.second.Reset()
	return p99
}

func (m *meter) startStep(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stepStart = append(m.stepStart, at)
	m.stepHists = append(m.stepHists, newHist())
}

func ms(us int64) float64 { return float64(us) / 1000 }

// run performs the load test p and returns its report.
func run(ctx context.Context, p Params, out io.Writer) (*Report, error) {
	target := cluster.Target{API: p.API, Gateways: p.Targets, Describe: "running deployment at " + p.API}
	var groups []procstat.Group // the server's processes, for the CPU report
	if p.API == "" {
		dir, err := os.MkdirTemp("", "pixelflow-loadtest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if p.Topology == "serve" {
			d, err := startServe(ctx, dir, p)
			if err != nil {
				return nil, err
			}
			defer d.stop()
			target, groups = d.target(p), d.groups()
		} else {
			c, err := launchCluster(ctx, dir, p, out)
			if c != nil {
				defer func() {
					if err := c.Close(); err != nil {
						fmt.Fprintln(out, "teardown:", err)
					}
				}()
			}
			if err != nil {
				return nil, err
			}
			target = c.Target()
			if groups, err = clusterGroups(c, p.CPUsServer); err != nil {
				return nil, err
			}
		}
	}
	if p.CPUsLoad != "" {
		if err := pinSelf(p.CPUsLoad); err != nil {
			return nil, err
		}
	}
	groups = append(groups, procstat.Group{Name: loadGroup, Pids: func() []int { return []int{os.Getpid()} }})
	fmt.Fprintf(out, "loadtest %s on %s: %d clients over %d gateways, %d writes/s, wire %s\n", p.Scenario, target.Describe, p.Clients, len(target.Gateways), p.Rate, p.Wire)

	rec := history.NewRecorder(rand.Uint32())
	m := newMeter()
	sent := newSendTimes()
	var regions *regionMeter
	if p.View > 0 {
		regions = &regionMeter{side: p.Canvas}
	}
	viewRng := rand.New(rand.NewPCG(uint64(p.Clients), 16))
	record := func(_ int, o *client.Options) {
		prev := o.OnEvent
		o.OnEvent = func(r client.Received) { prev(r); m.observe(r) }
		if regions != nil {
			o.Regions = viewRegions(viewRng, p.Canvas, p.View)
			regions.view(o.Regions)
			o.OnEvent = func(r client.Received) { prev(r); m.observe(r); regions.observe(r) }
		}
		o.Logger = quietLogger()
		o.DiscardHistory = true
		switch p.Wire {
		case wireTimed: // the commit → client and stage figures need both
			o.Fields = []string{protocol.FieldCommittedAt, protocol.FieldPublishedAt}
		case wireBinary:
			o.Binary = true
		}
	}
	w, err := cluster.Watch(ctx, rec, target, p.Clients, record)
	if err != nil {
		return nil, err
	}
	defer w.Stop()

	rep := &Report{Params: p, Target: target.Describe, Machine: machine(), Commit: report.Commit(ctx), Started: time.Now()}
	writer := cluster.NewWriter(target.API, rec, p.Region)
	writer.Retries = 0
	writer.OnSend = sent.record
	m.sent = sent
	l := &loop{p: p, m: m, w: w, writer: writer, api: target.API, out: out, start: time.Now(), groups: groups}

	steps := p.Steps
	stepTime := p.StepTime
	if steps == nil {
		steps, stepTime = []int{p.Rate}, p.Duration
	}
	for _, rate := range steps {
		m.startStep(time.Now())
		res := l.drive(ctx, rate, stepTime)
		rep.Steps = append(rep.Steps, res)
		if p.Steps != nil {
			fmt.Fprintf(out, "step %d writes/s: achieved %.0f/s, shed %d\n", rate, res.Achieved, res.Shed)
		}
		if u := res.Usage; u != nil {
			fmt.Fprintln(out, u.line())
		}
		if ctx.Err() != nil {
			break
		}
		if p.Steps != nil {
			// End capacity when this step's P99 (by commit time, known once
			// the step's events arrived) passed the limit or the rate was
			// not reached.
			time.Sleep(time.Second)
			m.mu.Lock()
			p99 := ms(m.stepHists[len(m.stepHists)-1].ValueAtQuantile(99))
			m.mu.Unlock()
			if p99 > float64(p.P99Limit.Microseconds())/1000 || res.Achieved < 0.9*float64(rate) {
				fmt.Fprintf(out, "capacity: stopping after %d writes/s (P99 %.1f ms, achieved %.0f/s)\n", rate, p99, res.Achieved)
				break
			}
		}
	}
	rep.Series = l.series

	logf := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	rep.History = cluster.Verify(ctx, "loadtest-"+p.Scenario, target, rec, w, 60*time.Second, logf)
	rep.finish(m)
	if regions != nil {
		rep.Regions = regions.result(p.View, rec.Writes(), rep.History)
	}
	rep.print(out)
	return rep, nil
}

// loop drives open-loop writes and prints progress each second.
type loop struct {
	p      Params
	m      *meter
	w      *cluster.Watchers
	writer *cluster.Writer
	api    string
	out    io.Writer
	start  time.Time

	groups []procstat.Group // the server's processes and the load generator, for Usage

	series []Second
}

// received sums what the clients have received: events (duplicates and
// canaries included), frames and bytes.
func (l *loop) received() (events, frames, bytes int64) {
	for _, c := range l.w.Clients {
		st := c.Stats()
		events += st.Received
		frames += st.Frames
		bytes += st.Bytes
	}
	return events, frames, bytes
}

// sendTimes remembers when each write was sent, by its colour (unique per
// write): a ring of 2^20 slots, enough for any run's writes.
type sendTimes struct{ ns []int64 }

const sendRing = 1 << 20

func newSendTimes() *sendTimes { return &sendTimes{ns: make([]int64, sendRing)} }

func (s *sendTimes) record(c canvas.Color, at time.Time) {
	atomic.StoreInt64(&s.ns[uint32(c)%sendRing], at.UnixNano())
}

// at is when the write of colour c was sent (unix ns), 0 if unknown.
func (s *sendTimes) at(c canvas.Color) int64 { return atomic.LoadInt64(&s.ns[uint32(c)%sendRing]) }

// Second is one second of the time series.
type Second struct {
	T         float64 `json:"t"`
	Writes    float64 `json:"writesPerSec"`
	Delivered float64 `json:"deliveredPerSec"`
	P99       float64 `json:"p99Ms"`
	Backlog   int     `json:"backlog"`
}

// drive schedules rate writes/s for d, open-loop: write i is due at start
// + i/rate, at most InFlight at once (one due while all are busy is shed).
func (l *loop) drive(ctx context.Context, rate int, d time.Duration) StepResult {
	res := StepResult{Rate: rate}
	start := time.Now()
	total := int(float64(rate) * d.Seconds())
	ackedBefore := l.writer.Acked()
	rngs := make([]*rand.Rand, l.p.InFlight)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(rate), uint64(start.UnixNano())+uint64(i)))
	}
	// CPU is measured after a warm-up (the side-by-side harness's 5 s, at
	// most a quarter of the step), until the step's writes are done.
	warm := start.Add(min(5*time.Second, d/4))
	var (
		s0            procstat.Sample
		ev0, fr0, by0 int64
		sampled       bool
	)
	sample := func(now time.Time) {
		if !sampled && !now.Before(warm) {
			s0 = procstat.Read(l.groups)
			ev0, fr0, by0 = l.received()
			sampled = true
		}
	}
	lastAcked, lastDelivered, lastLog := l.writer.Acked(), l.w.Delivered(), start
	progress := func(now time.Time, inFlight int) {
		sample(now)
		acked, delivered := l.writer.Acked(), l.w.Delivered()
		secs := now.Sub(lastLog).Seconds()
		backlog, _ := cluster.Backlog(ctx, l.api)
		s := Second{T: now.Sub(l.start).Seconds(), Writes: float64(acked-lastAcked) / secs, Delivered: float64(delivered-lastDelivered) / secs, P99: l.m.rollSecond(), Backlog: backlog}
		l.series = append(l.series, s)
		l.m.mu.Lock()
		p99all := ms(l.m.delivery.ValueAtQuantile(99))
		l.m.mu.Unlock()
		fmt.Fprintf(l.out, "t=%5.1fs writes/s=%6.0f deliveries/s=%8.0f p99(sec)=%7.1fms p99(so far)=%7.1fms backlog=%5d in-flight=%d\n",
			s.T, s.Writes, s.Delivered, s.P99, p99all, s.Backlog, inFlight)
		lastAcked, lastDelivered, lastLog = acked, delivered, now
	}
	paced := pace.Pacer{Rate: rate, Total: total, Workers: l.p.InFlight, Every: progress}.Run(ctx, func(worker int, due time.Time) {
		rng := rngs[worker]
		wr := l.writer.Place(context.WithoutCancel(ctx), rng.IntN(l.p.Region), rng.IntN(l.p.Region))
		if wr.Outcome == history.OK {
			l.m.mu.Lock()
			_ = l.m.http.RecordValue(max(wr.End.Sub(due).Microseconds(), 1))
			l.m.mu.Unlock()
		}
	})
	if sampled {
		s1 := procstat.Read(l.groups)
		ev1, fr1, by1 := l.received()
		res.Usage = usage(l.groups, s0, s1, ev1-ev0, fr1-fr0, by1-by0, runtime.NumCPU(), l.p.MaxOther)
	}
	res.Shed = paced.Shed
	res.Sent = total - res.Shed
	res.Achieved = float64(l.writer.Acked()-ackedBefore) / paced.Elapsed.Seconds()
	return res
}
