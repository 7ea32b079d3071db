package history

import (
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

func at(seq uint64) canvas.Position { return canvas.Position{Epoch: "e1", Seq: seq} }

// seq gives an event its stream position.
func seq(e canvas.Event, s uint64) canvas.Event { e.Epoch, e.Seq = "e1", s; return e }

func verdicts(r *Recorder) map[string]Verdict {
	_, vs := r.Check()
	got := map[string]Verdict{}
	for _, v := range vs {
		got[v.Client] = v
	}
	return got
}

// A region client must get every acknowledged write inside the regions it
// held, from the position it held them from until the next change; writes
// elsewhere, before it held the region or after it left it, are not its
// business. "whole" (a whole-canvas client) gives the writes positions.
func TestRegionClientMissingAnInRegionWriteLosesIt(t *testing.T) {
	r := NewRecorder(1)
	t0 := time.Now()
	w := func(gx, gy int, s uint64, to ...string) Write {
		wr := Write{GX: gx, GY: gy, Color: r.NextColor(), Outcome: OK, Version: 1, Start: t0.Add(time.Duration(s) * time.Millisecond)}
		r.Write(wr)
		e := seq(ev("", gx, gy, wr.Color), s)
		r.Event("whole", e)
		for _, c := range to {
			r.Event(c, e)
		}
		return wr
	}
	r.Regions("whole", Subscription{Kind: SubConnected, All: true, Position: at(0), At: t0})
	r.Regions("ok", Subscription{Kind: SubConnected, Regions: []canvas.Region{0}, Position: at(0), At: t0})
	r.Regions("missed", Subscription{Kind: SubConnected, Regions: []canvas.Region{0}, Position: at(0), At: t0})
	w(1, 1, 1, "ok") // region 0: due to both
	w(100, 0, 2)     // region 1, not held yet: due to neither
	sub := func(c string, rs ...canvas.Region) {
		r.Regions(c, Subscription{Kind: SubSent, Regions: rs})
		r.Regions(c, Subscription{Kind: SubAcked, Regions: append([]canvas.Region{0}, rs...), Position: at(10)})
	}
	sub("ok", 1)
	sub("missed", 1)
	w(101, 0, 12, "ok") // region 1 after the ack: due
	w(102, 0, 15, "ok") // before the unsubscribe took effect: due
	for _, c := range []string{"ok", "missed"} {
		r.Regions(c, Subscription{Kind: SubSent, Regions: []canvas.Region{1}, Unsubscribe: true})
		r.Regions(c, Subscription{Kind: SubAcked, Regions: []canvas.Region{0}, Position: at(20)})
	}
	w(103, 0, 25) // after: due to neither
	// Nobody received this one (no position): due, since both held
	// region 0 from before it began.
	nobody := Write{GX: 2, GY: 2, Color: r.NextColor(), Outcome: OK, Version: 1, Start: t0.Add(time.Second)}
	r.Write(nobody)
	r.Event("ok", ev("", 2, 2, nobody.Color))
	got := verdicts(r)
	if v := got["ok"]; v.Lost != 0 || v.Outside != 0 {
		t.Errorf("ok = %+v, want clean", v)
	}
	if v := got["missed"]; v.Lost != 4 {
		t.Errorf("missed = %+v, want 4 lost (1,1), (101,0), (102,0) and (2,2)", v)
	}
	if v := got["whole"]; v.Lost != 1 || !strings.Contains(v.LostExamples[0], "(2,2)") {
		t.Errorf("whole = %+v, want only (2,2) lost, as before regions", v)
	}
	rep := r.NewReport("unit")
	if p := strings.Join(rep.Problems(), "\n"); !strings.Contains(p, "missed lost 4") {
		t.Errorf("problems:\n%s", p)
	}
}

// A pixel event outside everything a region client held is a violation;
// a new region's events before the acknowledgement, a removed region's
// until it, and canaries are fine. A resumed connection holds what its
// URL named.
func TestRegionClientReceivingOutsideItsRegionsFails(t *testing.T) {
	r := NewRecorder(2)
	c := r.NextColor()
	r.Write(Write{GX: 1, GY: 1, Color: c, Outcome: OK, Version: 1})
	px := func(gx, gy int, s uint64) canvas.Event { return seq(ev("", gx, gy, c), s) }
	r.Regions("c", Subscription{Kind: SubConnected, Regions: []canvas.Region{0}, Position: at(0)})
	r.Event("c", px(1, 1, 1))
	r.Regions("c", Subscription{Kind: SubSent, Regions: []canvas.Region{1}})
	r.Event("c", px(64, 0, 2)) // region 1 before its ack: fine
	r.Regions("c", Subscription{Kind: SubAcked, Regions: []canvas.Region{0, 1}, Position: at(2)})
	r.Regions("c", Subscription{Kind: SubSent, Regions: []canvas.Region{0}, Unsubscribe: true})
	r.Event("c", px(2, 2, 3)) // region 0 before the unsubscribe's ack: fine
	r.Regions("c", Subscription{Kind: SubAcked, Regions: []canvas.Region{1}, Position: at(3)})
	r.Event("c", canvas.Event{Kind: canvas.KindCanary, Epoch: "e1", Seq: 4})
	if v := verdicts(r)["c"]; v.Outside != 0 {
		t.Fatalf("c = %+v: nothing outside yet", v)
	}
	r.Event("c", px(3, 3, 5)) // region 0 after the ack that removed it
	r.Regions("c", Subscription{Kind: SubConnected, Regions: []canvas.Region{1}, Position: at(5), Since: at(5)})
	r.Event("c", px(640, 640, 6)) // region 650, never held
	v := verdicts(r)["c"]
	if v.Outside != 2 || len(v.OutsideExamples) != 2 || !strings.Contains(v.OutsideExamples[0], "(3,3)") {
		t.Fatalf("c = %+v, want 2 outside", v)
	}
	if p := strings.Join(r.NewReport("unit").Problems(), "\n"); !strings.Contains(p, "outside its regions") {
		t.Errorf("problems:\n%s", p)
	}
}

// A region client converges when its canvas equals the store's inside its
// regions; a missing, stale or extra pixel there, or anything outside
// them, is a divergence; the store's pixels elsewhere are not its concern.
func TestCanvasDiffJudgesTheRegionsHeld(t *testing.T) {
	store := map[[2]int]Pixel{{1, 1}: {1, 1}, {65, 0}: {2, 3}, {300, 300}: {4, 1}}
	held := []canvas.Region{0, 1}
	good := map[[2]int]Pixel{{1, 1}: {1, 1}, {65, 0}: {2, 3}}
	if d := CanvasDiff(good, store, false, held); d != "" {
		t.Errorf("converged region client: %s", d)
	}
	if d := CanvasDiff(good, store, true, nil); !strings.Contains(d, "(300,300)") {
		t.Errorf("a whole-canvas client missing (300,300): %q", d)
	}
	for name, got := range map[string]map[[2]int]Pixel{
		"missing": {{1, 1}: {1, 1}},
		"stale":   {{1, 1}: {1, 1}, {65, 0}: {2, 2}},
		"extra":   {{1, 1}: {1, 1}, {65, 0}: {2, 3}, {2, 2}: {9, 1}},
		"outside": {{1, 1}: {1, 1}, {65, 0}: {2, 3}, {300, 300}: {4, 1}},
	} {
		if d := CanvasDiff(got, store, false, held); d == "" {
			t.Errorf("%s: no divergence found", name)
		}
	}
}
