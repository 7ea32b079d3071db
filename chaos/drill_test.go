package chaos

import (
	"strings"
	"testing"
)

// A drill is run again only when it failed on performance alone while
// other processes competed; every other outcome stands at once.
func TestRunUndisturbed(t *testing.T) {
	perf := []Invariant{{"nothing lost", true, ""}, {invP99Recovers, false, "after 300 ms"}}
	lost := []Invariant{{"nothing lost", false, "lost 3"}, {invP99Recovers, false, "after 300 ms"}}
	pass := []Invariant{{"nothing lost", true, ""}, {invP99Recovers, true, ""}}
	others := map[string]float64{"before": 0.1, "after": 0.9}
	for _, c := range []struct {
		name      string
		first     *Result
		wantRuns  int
		wantNoted bool
	}{
		{"quiet performance failure stands", &Result{Scenario: "x", Invariants: perf}, 1, false},
		{"disturbed performance failure runs again", &Result{Scenario: "x", Invariants: perf, Disturbed: true, OtherCores: others}, 2, true},
		{"disturbed loss stands", &Result{Scenario: "x", Invariants: lost, Disturbed: true, OtherCores: others}, 1, false},
		{"disturbed pass stands", &Result{Scenario: "x", Invariants: pass, Disturbed: true, OtherCores: others}, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			runs := 0
			second := &Result{Scenario: "x", Invariants: perf, Disturbed: true, OtherCores: others}
			got := RunUndisturbed(t.Logf, func() *Result {
				runs++
				if runs == 1 {
					return c.first
				}
				return second
			})
			if runs != c.wantRuns {
				t.Fatalf("ran %d times, want %d", runs, c.wantRuns)
			}
			if c.wantNoted != (got.Note != "") {
				t.Fatalf("note %q, want one: %v", got.Note, c.wantNoted)
			}
			if c.wantRuns == 2 && (got != second || !strings.Contains(got.Note, invP99Recovers) || !strings.Contains(got.Note, "0.90")) {
				t.Fatalf("kept %+v with note %q, want the second run noting the failed criterion and the other cores", got, got.Note)
			}
			if c.wantRuns == 2 && !got.Failed() {
				t.Fatal("a second failure must stand as a failure")
			}
		})
	}
}
