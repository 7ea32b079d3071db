// Package history records what a test run did to pixelflow and what every
// client saw, then judges it the way Jepsen judges a queue: an acknowledged
// write that a client never saw is lost, an event nobody wrote is unexpected,
// and the same event seen twice is a counted (allowed) duplicate.
//
// The end-to-end suites, the chaos drills and the load test all record into
// one Recorder and call Check after their drain phase.
//
// Identity: every write a run makes gets a colour of its own (NextColor), so
// an event is matched to the write that made it by (gx, gy, colour) even when
// the write's answer never arrived (outcome unknown) and its event id is not
// known. A client "saw" a write if it received the write's event or loaded a
// snapshot holding that pixel at the write's version or a later one: after a
// resync a client legitimately skips events that its snapshot covers. Only a
// snapshot loaded after the write began counts: versions start over when the
// store loses its data (a DATA_DIR=memory restart, a restore, a rollback),
// and a snapshot of the old history with a higher version says nothing about
// a write of the new one. Within one history a snapshot loaded before a
// write began cannot hold it or anything newer at that pixel, so the rule
// never calls a covered write lost.
//
// Concurrency: every method is safe for concurrent use. Memory is one entry
// per write plus, per client, one counter per distinct event received.
package history

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Outcome is what the writer knows about a write.
type Outcome int

const (
	// OK: the API answered 201 (or an idempotent replay of a 201).
	OK Outcome = iota
	// Unknown: no answer (timeout, connection cut); it may or may not be
	// committed. Neither required to arrive nor forbidden from arriving.
	Unknown
	// Failed: the API answered with an error that guarantees nothing was
	// written (4xx, 503). Its event arriving anywhere is unexpected.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Unknown:
		return "unknown"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Write is one POST /api/pixels as the writer saw it.
type Write struct {
	GX, GY  int
	Color   canvas.Color
	Outcome Outcome
	// EventID and Version are known when Outcome is OK.
	EventID string
	Version int64
	// Start and End bound the request on the run's clock.
	Start, End time.Time
}

type key struct {
	gx, gy int
	color  canvas.Color
}

// Recorder collects one run's history.
type Recorder struct {
	colors atomic.Uint32

	mu      sync.Mutex
	writes  []*Write
	index   map[key]int // write key → position in writes
	clients map[string]*clientLog
	// seen is the stream position of each event key as first received
	// by any client: a write's position, for judging region clients.
	seen map[key]canvas.Position
}

// clientLog is compact on purpose: a load test has hundreds of clients
// times thousands of events, and the checker must not turn the load
// generator into a garbage collector's benchmark. Receipts are counted per
// write index; only events that match no write (yet) are kept by key.
type clientLog struct {
	counts    []uint8 // write index → times received (saturates at 255)
	unmatched map[key]int
	snaps     map[[2]int][]snapMark
	events    int
	regions   *regionLog // nil: never reported a subscription
}

// snapMark is one snapshot's version of a pixel and when it was loaded. A
// pixel keeps only marks that no other mark beats on both counts (loaded
// later with at least the version): normally one.
type snapMark struct {
	at      time.Time
	version int64
}

// covers reports whether a snapshot loaded at or after start held p at
// version or later.
func (c *clientLog) covers(p [2]int, version int64, start time.Time) bool {
	for _, m := range c.snaps[p] {
		if m.version >= version && !m.at.Before(start) {
			return true
		}
	}
	return false
}

// NewRecorder returns an empty history. Colours start at seed (any value;
// give each run its own so two runs on one canvas never share a colour).
func NewRecorder(seed uint32) *Recorder {
	r := &Recorder{index: map[key]int{}, clients: map[string]*clientLog{}, seen: map[key]canvas.Position{}}
	r.colors.Store(seed & 0xFFFFFF)
	return r
}

// NextColor returns a colour no other write of this recorder uses (for the
// first 2^24 writes).
func (r *Recorder) NextColor() canvas.Color {
	return canvas.Color(r.colors.Add(1) & 0xFFFFFF)
}

// Write records one write. A write recorded twice (a retry with the same
// Idempotency-Key) keeps its most definite outcome.
func (r *Recorder) Write(w Write) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{w.GX, w.GY, w.Color}
	if i, ok := r.index[k]; ok {
		if r.writes[i].Outcome != OK {
			r.writes[i] = &w
		}
		return
	}
	r.index[k] = len(r.writes)
	r.writes = append(r.writes, &w)
}

func (r *Recorder) client(name string) *clientLog {
	c := r.clients[name]
	if c == nil {
		c = &clientLog{unmatched: map[key]int{}, snaps: map[[2]int][]snapMark{}}
		r.clients[name] = c
	}
	return c
}

// Client registers a client by name, so one that received nothing still
// gets a verdict.
func (r *Recorder) Client(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.client(name)
}

// Event records one pixel event a client received. Canary events are not
// writes of the run and are ignored. An event may arrive before its
// writer has recorded the answer; it is matched at Check.
func (r *Recorder) Event(clientName string, e canvas.Event) {
	if e.Kind == canvas.KindCanary {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.client(clientName)
	c.events++
	k := key{e.GX, e.GY, e.Color}
	if _, ok := r.seen[k]; !ok && e.Epoch != "" {
		r.seen[k] = canvas.Position{Epoch: e.Epoch, Seq: e.Seq}
	}
	if rg := canvas.RegionOf(e.GX, e.GY); !c.regions.allowed(rg) {
		c.regions.outside++
		if len(c.regions.examples) < 5 {
			c.regions.examples = append(c.regions.examples, fmt.Sprintf("(%d,%d) %s at %s:%d (region %d)", e.GX, e.GY, e.Color, e.Epoch, e.Seq, rg))
		}
	}
	i, ok := r.index[k]
	if !ok {
		c.unmatched[k]++
		return
	}
	c.count(i, 1)
}

func (c *clientLog) count(i, n int) {
	if i >= len(c.counts) {
		c.counts = append(c.counts, make([]uint8, i+1-len(c.counts)+len(c.counts)/2)...)
	}
	c.counts[i] = uint8(min(255, int(c.counts[i])+n))
}

// Snapshot records a snapshot a client loaded at time at (on the clock the
// writes' Start uses): pixel -> version.
func (r *Recorder) Snapshot(clientName string, at time.Time, pixels map[[2]int]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.client(clientName)
	for p, v := range pixels {
		marks := c.snaps[p][:0]
		for _, m := range c.snaps[p] {
			if m.at.After(at) || m.version > v {
				marks = append(marks, m)
			}
		}
		c.snaps[p] = append(marks, snapMark{at: at, version: v})
	}
}

// Writes returns a copy of every write recorded.
func (r *Recorder) Writes() []Write {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Write, 0, len(r.writes))
	for _, w := range r.writes {
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Verdict is the judgement of one client.
type Verdict struct {
	Client string `json:"client"`
	// Events received (pixel events only, duplicates included).
	Events int `json:"events"`
	// Lost: acknowledged writes the client neither received nor had in a
	// snapshot. Must be 0.
	Lost int `json:"lost"`
	// Unexpected: events matching no write of the run, or a write that
	// failed. Must be 0.
	Unexpected int `json:"unexpected"`
	// Duplicated: extra receipts of an event already received. Allowed.
	Duplicated int `json:"duplicated"`
	// Outside: pixel events a region client received outside everything
	// it held (see Regions). Must be 0.
	Outside         int      `json:"outside,omitempty"`
	OutsideExamples []string `json:"outsideExamples,omitempty"`
	// Examples of lost and unexpected writes, for the report.
	LostExamples       []string `json:"lostExamples,omitempty"`
	UnexpectedExamples []string `json:"unexpectedExamples,omitempty"`
}

// Counts summarises the writes of a run.
type Counts struct {
	OK      int `json:"ok"`
	Unknown int `json:"unknown"`
	Failed  int `json:"failed"`
}

// seenOf is the stream position of w's event, if any client received it.
func (r *Recorder) seenOf(w *Write) (canvas.Position, bool) {
	p, ok := r.seen[key{w.GX, w.GY, w.Color}]
	return p, ok
}

// dueOf reports whether region client c had to get w.
func (r *Recorder) dueOf(c *clientLog, w *Write) bool {
	p, ok := r.seenOf(w)
	return c.regions.due(w, p, ok)
}

// Check judges every client against the writes recorded so far. Call it
// after the drain phase.
func (r *Recorder) Check() (Counts, []Verdict) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var counts Counts
	for _, w := range r.writes {
		switch w.Outcome {
		case OK:
			counts.OK++
		case Unknown:
			counts.Unknown++
		case Failed:
			counts.Failed++
		}
	}
	names := make([]string, 0, len(r.clients))
	for n := range r.clients {
		names = append(names, n)
	}
	sort.Strings(names)
	verdicts := make([]Verdict, 0, len(names))
	for _, n := range names {
		c := r.clients[n]
		// Events that arrived before their write was recorded.
		for k, times := range c.unmatched {
			if i, ok := r.index[k]; ok {
				c.count(i, times)
				delete(c.unmatched, k)
			}
		}
		v := Verdict{Client: n, Events: c.events}
		regional := c.regions != nil && c.regions.regional
		if c.regions != nil {
			v.Outside, v.OutsideExamples = c.regions.outside, c.regions.examples
		}
		for k, times := range c.unmatched {
			v.Unexpected++
			v.Duplicated += times - 1
			if len(v.UnexpectedExamples) < 5 {
				v.UnexpectedExamples = append(v.UnexpectedExamples, fmt.Sprintf("(%d,%d) %s", k.gx, k.gy, k.color))
			}
		}
		for i, w := range r.writes {
			times := 0
			if i < len(c.counts) {
				times = int(c.counts[i])
			}
			if times > 1 {
				v.Duplicated += times - 1
			}
			switch {
			case times > 0 && w.Outcome == Failed:
				v.Unexpected++
				if len(v.UnexpectedExamples) < 5 {
					v.UnexpectedExamples = append(v.UnexpectedExamples, fmt.Sprintf("(%d,%d) %s (a failed write)", w.GX, w.GY, w.Color))
				}
			case times == 0 && w.Outcome == OK && !c.covers([2]int{w.GX, w.GY}, w.Version, w.Start) && (!regional || r.dueOf(c, w)):
				v.Lost++
				if len(v.LostExamples) < 5 {
					v.LostExamples = append(v.LostExamples, fmt.Sprintf("(%d,%d) %s v%d id %s", w.GX, w.GY, w.Color, w.Version, w.EventID))
				}
			}
		}
		verdicts = append(verdicts, v)
	}
	return counts, verdicts
}
