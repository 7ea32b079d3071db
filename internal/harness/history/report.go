package history

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a run's verdict: what the checker found plus what the harness
// found when it compared every client's canvas with the store.
type Report struct {
	Name     string        `json:"name"`
	Provider string        `json:"provider,omitempty"`
	Duration time.Duration `json:"durationNs"`
	Writes   Counts        `json:"writes"`
	Clients  []Verdict     `json:"clients"`
	// Diverged lists clients whose canvas differed from GET /api/canvas
	// after the drain phase, with the first differences.
	Diverged []string `json:"diverged,omitempty"`
	// Notes are harness findings that fail the run (e.g. the final write
	// after a fault did not succeed).
	Notes []string `json:"notes,omitempty"`
}

// NewReport runs Check and fills a report.
func (r *Recorder) NewReport(name string) *Report {
	counts, verdicts := r.Check()
	return &Report{Name: name, Writes: counts, Clients: verdicts}
}

// Problems lists everything that fails the run; empty means clean.
func (rep *Report) Problems() []string {
	var out []string
	for _, v := range rep.Clients {
		if v.Lost > 0 {
			out = append(out, fmt.Sprintf("%s lost %d acknowledged writes, e.g. %s", v.Client, v.Lost, strings.Join(v.LostExamples, "; ")))
		}
		if v.Unexpected > 0 {
			out = append(out, fmt.Sprintf("%s received %d events nobody wrote, e.g. %s", v.Client, v.Unexpected, strings.Join(v.UnexpectedExamples, "; ")))
		}
		if v.Outside > 0 {
			out = append(out, fmt.Sprintf("%s received %d pixel events outside its regions, e.g. %s", v.Client, v.Outside, strings.Join(v.OutsideExamples, "; ")))
		}
	}
	out = append(out, rep.Diverged...)
	out = append(out, rep.Notes...)
	if rep.Writes.OK == 0 {
		out = append(out, "no write was acknowledged: the run proves nothing")
	}
	return out
}

// Totals sums the verdicts.
func (rep *Report) Totals() (events, lost, unexpected, duplicated int) {
	for _, v := range rep.Clients {
		events += v.Events
		lost += v.Lost
		unexpected += v.Unexpected
		duplicated += v.Duplicated
	}
	return
}

// Print writes a short table: the totals, then the clients with findings
// (all of them when there are at most 10).
func (rep *Report) Print(w io.Writer) {
	events, lost, unexpected, duplicated := rep.Totals()
	fmt.Fprintf(w, "history %s (%s, %s): writes ok=%d unknown=%d failed=%d; %d clients\n",
		rep.Name, rep.Provider, rep.Duration.Round(time.Millisecond), rep.Writes.OK, rep.Writes.Unknown, rep.Writes.Failed, len(rep.Clients))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "client\tevents\tlost\tunexpected\tduplicated\t")
	for _, v := range rep.Clients {
		if len(rep.Clients) <= 10 || v.Lost > 0 || v.Unexpected > 0 || v.Duplicated > 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", v.Client, v.Events, v.Lost, v.Unexpected, v.Duplicated)
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\n", events, lost, unexpected, duplicated)
	tw.Flush()
	if p := rep.Problems(); len(p) > 0 {
		fmt.Fprintf(w, "FAIL:\n  %s\n", strings.Join(p, "\n  "))
	} else {
		fmt.Fprintln(w, "clean: nothing lost, nothing unexpected, every canvas equals the store")
	}
}

// WriteJSON writes the report to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
