package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/e2e"
)

// suite is what TestMain decided once.
type suite struct{ bin, provider string }

var env suite

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pixelflow-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	env.bin, env.provider, err = e2e.Prepare(context.Background(), dir, "failpoints")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestChaos runs every scenario (one subtest each: -run 'TestChaos/^name$'
// picks one) and writes the report to $CHAOS_OUT (default ./out).
func TestChaos(t *testing.T) {
	name := os.Getenv("CHAOS_PROFILE")
	if name == "" {
		name = "short"
	}
	p, ok := Profiles()[name]
	if !ok {
		t.Fatalf("CHAOS_PROFILE=%q: want short or drill", name)
	}
	out := os.Getenv("CHAOS_OUT")
	if out == "" {
		out = "out"
	}
	rep := &Report{Profile: p.Name, When: time.Now()}
	defer func() {
		if len(rep.Results) == 0 {
			return
		}
		if err := rep.Write(out); err != nil {
			t.Error(err)
		}
		abs, _ := filepath.Abs(filepath.Join(out, "report.html"))
		t.Logf("chaos report: %s", abs)
		var lines []string
		for _, r := range rep.Results {
			lines = append(lines, fmt.Sprintf("%-22s %s", r.Scenario, r.Status))
		}
		t.Logf("resiliency matrix:\n  %s", strings.Join(lines, "\n  "))
	}()
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res := Run(ctx, t, sc, p, env.bin, env.provider)
			rep.Results = append(rep.Results, res)
			for _, inv := range res.Invariants {
				mark := "pass"
				if !inv.Pass {
					mark = "FAIL"
					t.Errorf("%s: %s: %s", sc.Name, inv.Name, inv.Figure)
				}
				t.Logf("%-4s %s: %s", mark, inv.Name, inv.Figure)
			}
			if res.Status == "not run" {
				t.Logf("%s not run here: %s", sc.Name, res.Why)
			}
		})
	}
}
