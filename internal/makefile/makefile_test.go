package makefile

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/chaos"
)

// root is the repository root, where the Makefile is.
const root = "../.."

// mk runs make in the repository root, outside any make that runs this
// test (its MAKEFLAGS would reach the child). A Makefile that regressed
// may start a server or the drills: make and all it started are killed
// after a few minutes.
func mk(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("make %s still running after 3 minutes: killed\n%s%s", args, o.String(), e.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), o.String(), e.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, o.String(), e.String()
}

// TestBareMakePrintsTheTargets: make alone is make help (compared as dry
// runs, so a default goal that starts a server is not started), which
// lists every target documented by a ## block, each under its name.
func TestBareMakePrintsTheTargets(t *testing.T) {
	_, dryBare, _ := mk(t, "-n")
	if _, dryHelp, _ := mk(t, "-n", "help"); dryBare != dryHelp {
		t.Fatalf("make alone would run\n%s\nnot make help:\n%s", dryBare, dryHelp)
	}
	code, bare, errOut := mk(t)
	if code != 0 || errOut != "" {
		t.Fatalf("make: exit %d, stderr %q", code, errOut)
	}
	src, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	// The target of each ## block is named before the first ": " of its
	// first line.
	var heads []string
	inBlock := false
	for _, l := range strings.Split(string(src), "\n") {
		doc, ok := strings.CutPrefix(l, "## ")
		if ok && !inBlock {
			name, _, _ := strings.Cut(doc, ": ")
			heads = append(heads, name)
		}
		inBlock = ok
	}
	if len(heads) < 10 {
		t.Fatalf("found %d documented targets in the Makefile: %q", len(heads), heads)
	}
	for _, h := range heads {
		if !strings.Contains(bare, "\n  "+h+" ") {
			t.Errorf("make does not list %q:\n%s", h, bare)
		}
	}
	for _, target := range []string{"help", "run", "build", "test", "lint", "chaos", "scenarios", "e2e"} {
		if !regexp.MustCompile(`\n  ` + target + ` +\S`).MatchString(bare) {
			t.Errorf("make does not list %s", target)
		}
	}
}

// TestMakeChaosRefusesAnUnknownScenario: a SCENARIO no drill has fails,
// before anything is installed or run, with the known names, instead of
// passing on "no tests to run".
func TestMakeChaosRefusesAnUnknownScenario(t *testing.T) {
	code, out, errOut := mk(t, "chaos", "SCENARIO=redis-kil")
	if code == 0 {
		t.Fatalf("make chaos SCENARIO=redis-kil passed:\n%s%s", out, errOut)
	}
	if !strings.Contains(errOut, `unknown SCENARIO "redis-kil"`) || !strings.Contains(errOut, "redis-kill") || strings.Contains(out+errOut, "ensure-installed") {
		t.Errorf("make chaos SCENARIO=redis-kil: stdout %q stderr %q; want the refusal and the list, nothing run", out, errOut)
	}
}

// TestMakeChaosListsScenarios: SCENARIO=list and make scenarios print
// every drill and the nemesis runs, and run nothing.
func TestMakeChaosListsScenarios(t *testing.T) {
	for _, args := range [][]string{{"chaos", "SCENARIO=list"}, {"scenarios"}} {
		code, out, errOut := mk(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("make %s: exit %d, stderr %q", args, code, errOut)
		}
		for _, s := range chaos.Selections() {
			if !strings.Contains(out, "\n  "+s.Name+" ") {
				t.Errorf("make %s lacks %s", args, s.Name)
			}
		}
		if strings.Contains(out, "go test") {
			t.Errorf("make %s ran the drills:\n%s", args, out)
		}
	}
}
