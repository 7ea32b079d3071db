package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/report"
)

// The report shows each invariant as a matrix cell and draws a timeline
// with the fault shaded; the JSON holds the same results.
func TestReportRendersMatrixAndTimeline(t *testing.T) {
	res := &Result{
		Scenario: "redis-kill", Status: "fail", FaultStart: 1, FaultEnd: 2,
		Invariants: []Invariant{{"nothing lost", true, "lost 0"}, {"P99 recovers", false, "after 90 ms"}},
		Timeline:   []Point{{T: 0.5, Committed: 100, Delivered: 1200}, {T: 1.5, Committed: 100, Backlog: 50}, {T: 2.5, Committed: 100, Delivered: 3000, P99: 40}},
		Phases:     map[string]Rate{"after": {P99Ms: 90}, "before": {P99Ms: 10}},
	}
	skipped := &Result{Scenario: "mongo-partition", Status: "not run", Why: "no MongoDB here"}
	dir := t.TempDir()
	if err := (&Report{Profile: "short", When: time.Now(), Results: []*Result{res, skipped}}).Write(dir); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	commit := strings.TrimSuffix(report.Commit(t.Context()), "+dirty") // html/template writes + as &#43;
	for _, want := range []string{"on commit " + commit, `class="fail" title="after 90 ms">FAIL`, `class="pass" title="lost 0">pass`, "<svg", "<polyline", "fault shaded", "Not run: no MongoDB here"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Index(string(html), "<td>before</td>") > strings.Index(string(html), "<td>after</td>") {
		t.Error("phases out of time order")
	}
	var back Report
	raw, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Results) != 2 || !back.Results[0].Failed() {
		t.Fatalf("report.json: %v %+v", err, back)
	}
}

func TestQuantileAndDrainRate(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if q := quantile(d, 0.99); q != 99 { // rank ⌊0.99·100 + 0.5⌋, as HDR
		t.Errorf("p99 of 1..100 ms = %v", q)
	}
	if q := quantile(nil, 0.5); q != 0 {
		t.Errorf("quantile of nothing = %v", q)
	}
	now := time.Now()
	dr := drain{start: now, end: now.Add(100 * time.Millisecond), peak: 510, baseline: 10}
	if r := dr.rate(100); r < 5099 || r > 5101 { // (500 + 100*0.1) / 0.1
		t.Errorf("drain rate = %v, want 5100", r)
	}
}
