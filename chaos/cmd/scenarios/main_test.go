package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/chaos"
)

func runArgs(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestListNamesEveryRun: the list holds every drill of chaos.Scenarios and
// the nemesis runs, one line each.
func TestListNamesEveryRun(t *testing.T) {
	code, out, _ := runArgs()
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	names := []string{"containers", "nemesis", "replay", "nemesis-teeth", "nemesis-teeth-rejoin"}
	for _, sc := range chaos.Scenarios() {
		names = append(names, sc.Name)
	}
	for _, n := range names {
		if !strings.Contains(out, "\n  "+n+" ") {
			t.Errorf("list lacks %s:\n%s", n, out)
		}
	}
	if lines := strings.Count(out, "\n") - 1; lines != len(names) {
		t.Errorf("%d lines for %d names", lines, len(names))
	}
}

// TestPatterns: each name gives the -run pattern of its own test, no
// SCENARIO every drill, and an unknown name exit 2 with the list.
func TestPatterns(t *testing.T) {
	for name, want := range map[string]string{
		"":                     chaos.AllDrills,
		"redis-kill":           "TestChaos/^redis-kill$",
		"nemesis":              "^TestNemesis$",
		"replay":               "^TestNemesis$",
		"nemesis-teeth":        "^TestNemesisTeeth$",
		"nemesis-teeth-rejoin": "^TestNemesisTeethRejoin$",
	} {
		if code, out, errOut := runArgs("-run", name); code != 0 || out != want+"\n" {
			t.Errorf("-run %q: exit %d, %q %q; want %q", name, code, out, errOut, want)
		}
	}
	for _, bad := range []string{"redis-kil", "redis", ".*", "list"} {
		code, out, errOut := runArgs("-run", bad)
		if code != 2 || out != "" || !strings.Contains(errOut, `unknown SCENARIO "`+bad+`"`) || !strings.Contains(errOut, "\n  redis-kill ") {
			t.Errorf("-run %q: exit %d, stdout %q, stderr %q; want 2 and the list", bad, code, out, errOut)
		}
	}
	if code, _, _ := runArgs("extra"); code != 2 {
		t.Errorf("a stray argument: exit %d", code)
	}
}
