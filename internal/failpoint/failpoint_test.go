package failpoint

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	got, err := Parse("relay:after-xadd=crash@3; relay:forget-claim=on\n# a comment\nstore:x=error ;a=sleep(20ms)@2\n\nb=off")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Action{
		"relay:after-xadd":   {Kind: Crash, Nth: 3},
		"relay:forget-claim": {Kind: Error},
		"store:x":            {Kind: Error},
		"a":                  {Kind: Sleep, Nth: 2, Sleep: 20 * time.Millisecond},
		"b":                  {Kind: Off},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for n, a := range want {
		if got[n] != a {
			t.Errorf("%s: got %v, want %v", n, got[n], a)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, spec := range []string{
		"noequals", "=crash", "a b=crash", "x=explode", "x=crash@0", "x=crash@-1", "x=crash@two",
		"x=sleep(1)", "x=sleep(-1s)", "x=sleep(1s", "x=off@2",
	} {
		if _, err := Parse(spec); err == nil {
			t.Errorf("Parse(%q) accepted a bad spec", spec)
		}
	}
}

// set returns a Set from the given environment whose crash is recorded,
// not performed.
func set(t *testing.T, env map[string]string) (*Set, *int) {
	t.Helper()
	s, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		t.Fatal("FromEnv returned no set although failpoints were configured")
	}
	crashes := 0
	s.crash = func() { crashes++ }
	s.log = io.Discard
	return s, &crashes
}

func TestNothingConfiguredIsNil(t *testing.T) {
	s, err := FromEnv(func(string) string { return "" })
	if err != nil || s != nil {
		t.Fatalf("FromEnv with nothing set = %v, %v; want nil, nil", s, err)
	}
	if s.Func() != nil {
		t.Fatal("a nil Set's Func must be nil, so the options' hooks stay nil")
	}
}

func TestBadEnvIsAnError(t *testing.T) {
	_, err := FromEnv(func(k string) string { return map[string]string{EnvSpec: "x=explode"}[k] })
	if err == nil || !strings.Contains(err.Error(), EnvSpec) {
		t.Fatalf("got %v, want an error naming %s", err, EnvSpec)
	}
}

func TestErrorEveryHitAndNth(t *testing.T) {
	s, _ := set(t, map[string]string{EnvSpec: "a=on;b=error@3"})
	for i := range 3 {
		if err := s.Hit("a"); !errors.Is(err, ErrInjected) {
			t.Fatalf("hit %d of a: %v, want ErrInjected", i+1, err)
		}
	}
	for i := 1; i <= 5; i++ {
		err := s.Hit("b")
		if (i == 3) != (err != nil) {
			t.Fatalf("hit %d of b: %v (want an error on hit 3 only)", i, err)
		}
	}
	if err := s.Hit("unarmed"); err != nil {
		t.Fatalf("unarmed failpoint returned %v", err)
	}
}

func TestCrashNth(t *testing.T) {
	s, crashes := set(t, map[string]string{EnvSpec: "relay:after-xadd=crash@2"})
	_ = s.Hit("relay:after-xadd")
	if *crashes != 0 {
		t.Fatal("crashed on the first hit")
	}
	_ = s.Hit("relay:after-xadd")
	if *crashes != 1 {
		t.Fatalf("crashes after the second hit = %d, want 1", *crashes)
	}
	_ = s.Hit("relay:after-xadd")
	if *crashes != 1 {
		t.Fatal("crashed again after the Nth hit")
	}
}

func TestSleep(t *testing.T) {
	s, _ := set(t, map[string]string{EnvSpec: "a=sleep(50ms)"})
	start := time.Now()
	if err := s.Hit("a"); err != nil {
		t.Fatalf("sleep returned %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("sleep(50ms) stalled only %s", d)
	}
}

// arm writes the file the way a drill does: a temporary file, renamed.
func arm(t *testing.T, path, spec string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileArmsAtRunTime(t *testing.T) {
	file := filepath.Join(t.TempDir(), "failpoints")
	s, crashes := set(t, map[string]string{EnvSpec: "a=on", EnvFile: file})
	if err := s.Hit("b"); err != nil {
		t.Fatalf("b before arming: %v", err)
	}
	arm(t, file, "b=error\n")
	if err := s.Hit("b"); !errors.Is(err, ErrInjected) {
		t.Fatalf("b after arming: %v, want ErrInjected", err)
	}
	if err := s.Hit("a"); !errors.Is(err, ErrInjected) {
		t.Fatal("the file's rules must add to the environment's")
	}
	// The file overrides the environment, and off disarms.
	arm(t, file, "a=off\nb=crash@2")
	if err := s.Hit("a"); err != nil {
		t.Fatalf("a disarmed by the file still fires: %v", err)
	}
	// b's rule changed: its hits count afresh.
	_ = s.Hit("b")
	if *crashes != 0 {
		t.Fatal("crash@2 fired on the first hit after re-arming")
	}
	_ = s.Hit("b")
	if *crashes != 1 {
		t.Fatalf("crash@2: %d crashes after two hits, want 1", *crashes)
	}
	// Removing the file leaves the environment's rules.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := s.Hit("a"); !errors.Is(err, ErrInjected) {
		t.Fatal("with the file gone, the environment's a=on must hold again")
	}
	if err := s.Hit("b"); err != nil {
		t.Fatalf("with the file gone, b still fires: %v", err)
	}
}

func TestBrokenFileKeepsRules(t *testing.T) {
	file := filepath.Join(t.TempDir(), "failpoints")
	s, _ := set(t, map[string]string{EnvFile: file})
	arm(t, file, "a=on")
	if err := s.Hit("a"); err == nil {
		t.Fatal("a not armed")
	}
	arm(t, file, "a=explode")
	if err := s.Hit("a"); !errors.Is(err, ErrInjected) {
		t.Fatalf("a broken file changed the rules in force: %v", err)
	}
}

// TestCrashKillsTheProcess runs this test binary as a child with a crash
// armed and checks it dies of SIGKILL at the hit, before the code after it.
func TestCrashKillsTheProcess(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		s, err := FromEnv(os.Getenv)
		if err != nil {
			os.Exit(3)
		}
		_ = s.Hit("child:point")
		os.Exit(0) // only reached if the crash did not happen
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKillsTheProcess$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", EnvSpec+"=child:point=crash")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child did not die: %v\n%s", err, out)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want death by SIGKILL\n%s", err, out)
	}
	if !strings.Contains(string(out), "child:point fires crash") {
		t.Fatalf("the crash was not logged before it happened:\n%s", out)
	}
}
