package history

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Region clients (docs/protocol.md, "Regions") are judged by what they
// held when: a client reports each step of its subscriptions (Regions),
// in order with its events, and from them the checker knows
//
//   - which writes it had to get: a write inside a region the client held
//     from a position before the write's (an acknowledgement's, or a
//     hello's: from the position it resumed from) until the next change,
//     received or covered by a snapshot as for whole-canvas clients (a
//     resync is covered by the region snapshot that follows it);
//   - which deliveries are violations: a pixel event outside everything it
//     held (acknowledged, or asked for by a subscribe not acknowledged
//     yet: a new region's events may come before the acknowledgement,
//     a removed one's until it). Canaries are not pixels.
//
// A write's position is its event's (epoch, seq) as any client received
// it. A write no client received has none: it is required of a region
// client only if the client still held its region at the end and held it
// since before the write began. Positions of another epoch compare by the
// order in which the client learned the epochs; a write of an epoch the
// client never held anything in is not required of it. Whole-canvas
// clients (never a report holding regions) are judged exactly as before.

// SubscriptionKind says what a Subscription reports.
type SubscriptionKind int

const (
	SubSent      SubscriptionKind = iota // a subscribe or unsubscribe was sent
	SubAcked                             // its acknowledgement arrived
	SubConnected                         // a hello: what the connection's URL named
	SubResynced                          // a resync: the same regions from a new position
)

// Subscription is one step of a client's subscriptions.
type Subscription struct {
	Kind SubscriptionKind
	// SubSent: what the frame asked to add (or remove, Unsubscribe).
	// Otherwise: everything held from Position on.
	All         bool
	Regions     []canvas.Region
	Unsubscribe bool
	// Position of the acknowledgement, hello or resync. For SubConnected,
	// Since is the position the client resumed from (zero if none).
	Position canvas.Position
	Since    canvas.Position
	At       time.Time
}

// regionLog is what the checker keeps of a region client.
type regionLog struct {
	regional bool // held regions (not the whole canvas) at some point
	ackAll   bool
	acked    map[canvas.Region]bool
	pending  []Subscription // sent, not acknowledged
	periods  []period
	epochs   map[string]int // in the order the client learned them
	outside  int
	examples []string
}

// period: from start on (exclusive) until the next period's start
// (inclusive), every event inside set (or anywhere, all) is due.
type period struct {
	epoch int
	seq   uint64
	all   bool
	set   map[canvas.Region]bool
	at    time.Time
}

func (p period) holds(r canvas.Region) bool { return p.all || p.set[r] }

// before reports whether position (e, s) is after p's start.
func (p period) startsBefore(e int, s uint64) bool {
	return p.epoch < e || p.epoch == e && p.seq < s
}

func setOf(rs []canvas.Region) map[canvas.Region]bool {
	m := make(map[canvas.Region]bool, len(rs))
	for _, r := range rs {
		m[r] = true
	}
	return m
}

func (l *regionLog) epoch(e string) int {
	if i, ok := l.epochs[e]; ok {
		return i
	}
	l.epochs[e] = len(l.epochs)
	return l.epochs[e]
}

func (l *regionLog) start(e string, seq uint64, s Subscription) {
	l.periods = append(l.periods, period{epoch: l.epoch(e), seq: seq, all: s.All, set: setOf(s.Regions), at: s.At})
}

// Regions records one step of a client's subscriptions. Call it in order
// with the client's Event calls (client.Options.OnRegions does).
func (r *Recorder) Regions(clientName string, s Subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.client(clientName)
	l := c.regions
	if l == nil {
		l = &regionLog{ackAll: true, epochs: map[string]int{}}
		c.regions = l
	}
	if s.Kind != SubSent && !s.All || s.Kind == SubSent && !s.All && !s.Unsubscribe {
		l.regional = true
	}
	switch s.Kind {
	case SubSent:
		l.pending = append(l.pending, s)
	case SubAcked:
		if len(l.pending) > 0 {
			l.pending = l.pending[1:]
		}
		l.ackAll, l.acked = s.All, setOf(s.Regions)
		l.start(s.Position.Epoch, s.Position.Seq, s)
	case SubConnected:
		l.pending = nil
		l.ackAll, l.acked = s.All, setOf(s.Regions)
		if s.Since.Epoch != "" && s.Since.Epoch == s.Position.Epoch {
			l.start(s.Since.Epoch, s.Since.Seq, s)
		} else {
			l.start(s.Position.Epoch, 0, s)
		}
	case SubResynced:
		if n := len(l.periods); n == 0 || l.periods[n-1].epoch != l.epoch(s.Position.Epoch) {
			l.start(s.Position.Epoch, 0, s)
		}
	}
}

// allowed reports whether a client may receive a pixel event of region rg
// now.
func (l *regionLog) allowed(rg canvas.Region) bool {
	if l == nil || !l.regional || l.ackAll || l.acked[rg] {
		return true
	}
	for _, s := range l.pending {
		if !s.Unsubscribe && (s.All || slices.Contains(s.Regions, rg)) {
			return true
		}
	}
	return false
}

// due reports whether a region client had to get write w, whose event's
// position is at (known: ok).
func (l *regionLog) due(w *Write, at canvas.Position, ok bool) bool {
	rg := canvas.RegionOf(w.GX, w.GY)
	if len(l.periods) == 0 {
		return false
	}
	if !ok {
		last := l.periods[len(l.periods)-1]
		if !last.holds(rg) {
			return false
		}
		// Held since before the write began, without a break.
		for i := len(l.periods) - 1; i >= 0 && l.periods[i].holds(rg); i-- {
			if l.periods[i].at.Before(w.Start) {
				return true
			}
		}
		return false
	}
	e, known := l.epochs[at.Epoch]
	if !known {
		return false
	}
	for i, p := range l.periods {
		if !p.holds(rg) || !p.startsBefore(e, at.Seq) {
			continue
		}
		if i+1 == len(l.periods) || !l.periods[i+1].startsBefore(e, at.Seq) {
			return true
		}
	}
	return false
}

// Pixel is one painted pixel of a canvas, for CanvasDiff.
type Pixel struct {
	Color   canvas.Color
	Version int64
}

// CanvasDiff describes how a client's canvas differs from the store's
// inside what the client holds (the whole canvas with all, else its
// regions): "" if they are equal there. A client holding regions must
// have nothing outside them.
func CanvasDiff(got, store map[[2]int]Pixel, all bool, regions []canvas.Region) string {
	in := setOf(regions)
	visible := func(p [2]int) bool { return all || in[canvas.RegionOf(p[0], p[1])] }
	var d []string
	extra, outside := 0, 0
	for p, s := range store {
		if !visible(p) {
			continue
		}
		if g, ok := got[p]; !ok || g != s {
			d = append(d, fmt.Sprintf("(%d,%d) has %s v%d, store %s v%d", p[0], p[1], g.Color, g.Version, s.Color, s.Version))
		}
	}
	for p := range got {
		switch {
		case !visible(p):
			outside++
		case store[p] == (Pixel{}):
			if _, ok := store[p]; !ok {
				extra++
			}
		}
	}
	if extra > 0 {
		d = append(d, strconv.Itoa(extra)+" pixels the store does not have")
	}
	if outside > 0 {
		d = append(d, strconv.Itoa(outside)+" pixels outside the regions held")
	}
	return Differences(d)
}

// Differences is how a canvas comparison reports what differs: "" for
// nothing, else the first three (sorted) and how many there are.
func Differences(d []string) string {
	if len(d) == 0 {
		return ""
	}
	sort.Strings(d)
	if len(d) > 3 {
		d = append(d[:3], fmt.Sprintf("… %d differences", len(d)))
	}
	return fmt.Sprint(d)
}
