package history

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

func ev(id string, gx, gy int, c canvas.Color) canvas.Event {
	return canvas.Event{ID: id, Kind: canvas.KindPixel, GX: gx, GY: gy, Color: c}
}

func TestCheckerFindsLostUnexpectedAndDuplicated(t *testing.T) {
	r := NewRecorder(100)
	a, b, c, d, e := r.NextColor(), r.NextColor(), r.NextColor(), r.NextColor(), r.NextColor()
	if a == b {
		t.Fatal("NextColor repeated a colour")
	}
	r.Write(Write{GX: 1, GY: 1, Color: a, Outcome: OK, EventID: "e1", Version: 1})
	r.Write(Write{GX: 2, GY: 2, Color: b, Outcome: OK, EventID: "e2", Version: 1})
	r.Write(Write{GX: 3, GY: 3, Color: c, Outcome: Unknown})
	r.Write(Write{GX: 4, GY: 4, Color: d, Outcome: Failed})
	r.Write(Write{GX: 5, GY: 5, Color: e, Outcome: OK, EventID: "e5", Version: 3})
	r.Client("silent")

	// clean: every OK write seen (one via a snapshot), the unknown one seen too.
	r.Event("clean", ev("e1", 1, 1, a))
	r.Event("clean", ev("e1", 1, 1, a)) // duplicate
	r.Event("clean", ev("e2", 2, 2, b))
	r.Event("clean", ev("e3", 3, 3, c))
	r.Event("clean", canvas.Event{ID: "k", Kind: canvas.KindCanary})
	r.Snapshot("clean", time.Now(), map[[2]int]int64{{5, 5}: 4})

	// bad: misses e2, has an old snapshot of (5,5), sees a failed write and a stranger.
	r.Event("bad", ev("e1", 1, 1, a))
	r.Event("bad", ev("e4", 4, 4, d))
	r.Event("bad", ev("x", 9, 9, 0x123456))
	r.Snapshot("bad", time.Now(), map[[2]int]int64{{5, 5}: 2})

	counts, vs := r.Check()
	if counts != (Counts{OK: 3, Unknown: 1, Failed: 1}) {
		t.Fatalf("counts = %+v", counts)
	}
	got := map[string]Verdict{}
	for _, v := range vs {
		got[v.Client] = v
	}
	if v := got["clean"]; v.Lost != 0 || v.Unexpected != 0 || v.Duplicated != 1 || v.Events != 4 {
		t.Errorf("clean = %+v", v)
	}
	if v := got["bad"]; v.Lost != 2 || v.Unexpected != 2 || v.Duplicated != 0 {
		t.Errorf("bad = %+v", v)
	}
	if v := got["silent"]; v.Lost != 3 {
		t.Errorf("silent = %+v, want 3 lost", v)
	}

	rep := r.NewReport("unit")
	if len(rep.Problems()) != 3 { // bad lost, bad unexpected, silent lost; clean has none
		t.Errorf("problems = %q", rep.Problems())
	}
	var buf bytes.Buffer
	rep.Print(&buf)
	if !strings.Contains(buf.String(), "FAIL") || !strings.Contains(buf.String(), "bad") {
		t.Errorf("table:\n%s", buf.String())
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	var back Report
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Clients) != 3 {
		t.Fatalf("json report: %v %s", err, raw)
	}
}

func TestRetriedWriteKeepsDefiniteOutcome(t *testing.T) {
	r := NewRecorder(0)
	c := r.NextColor()
	r.Write(Write{GX: 1, GY: 1, Color: c, Outcome: OK, EventID: "e", Version: 1})
	r.Write(Write{GX: 1, GY: 1, Color: c, Outcome: Unknown})
	if w := r.Writes(); len(w) != 1 || w[0].Outcome != OK {
		t.Fatalf("writes = %+v", w)
	}
}

func TestEmptyRunIsAProblem(t *testing.T) {
	rep := NewRecorder(0).NewReport("empty")
	if len(rep.Problems()) == 0 {
		t.Fatal("a run with no acknowledged write must not pass")
	}
}

// An event can reach a client before its writer has read the 201: it is
// matched to the write when the checker runs, not called unexpected.
func TestEventBeforeItsWriteIsMatched(t *testing.T) {
	r := NewRecorder(7)
	c := r.NextColor()
	r.Event("fast", ev("e1", 2, 3, c))
	r.Event("fast", ev("e1", 2, 3, c))
	r.Write(Write{GX: 2, GY: 3, Color: c, Outcome: OK, EventID: "e1", Version: 1})
	_, vs := r.Check()
	if v := vs[0]; v.Lost != 0 || v.Unexpected != 0 || v.Duplicated != 1 {
		t.Fatalf("verdict %+v, want clean with one duplicate", v)
	}
}

// A snapshot covers a write only if it was loaded after the write began:
// after the store restarted empty, versions start over, and an old
// snapshot's higher version at the pixel says nothing about a new write.
// A snapshot loaded after the write still covers it.
func TestSnapshotBeforeTheWriteDoesNotCoverIt(t *testing.T) {
	r := NewRecorder(9)
	t0 := time.Now()
	r.Snapshot("stale", t0, map[[2]int]int64{{5, 5}: 7}) // the old history's (5,5) v7
	r.Snapshot("fresh", t0, map[[2]int]int64{{5, 5}: 7})
	w := Write{GX: 5, GY: 5, Color: r.NextColor(), Outcome: OK, EventID: "n1", Version: 2, Start: t0.Add(time.Second), End: t0.Add(2 * time.Second)}
	r.Write(w)
	r.Snapshot("fresh", t0.Add(3*time.Second), map[[2]int]int64{{5, 5}: 2})
	_, vs := r.Check()
	got := map[string]Verdict{}
	for _, v := range vs {
		got[v.Client] = v
	}
	if v := got["stale"]; v.Lost != 1 {
		t.Errorf("stale = %+v: a snapshot loaded before the write covered it", v)
	}
	if v := got["fresh"]; v.Lost != 0 {
		t.Errorf("fresh = %+v: a snapshot loaded after the write did not cover it", v)
	}
}
