package procstat

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// /proc is read right: this process's CPU grows as it works, the machine's
// busy ticks never exceed its total, and a child is found by name and in
// the tree.
func TestProcReaders(t *testing.T) {
	before := ProcTicks(os.Getpid())
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	if after := ProcTicks(os.Getpid()); after <= before {
		t.Errorf("own CPU ticks %d then %d", before, after)
	}
	busy, total := MachineTicks()
	if total <= 0 || busy < 0 || busy > total {
		t.Errorf("machine ticks busy %d total %d", busy, total)
	}
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if pids := ChildrenNamed("sleep", os.Getpid()); len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("children named sleep: %v, want [%d]", pids, cmd.Process.Pid)
	}
	if tree := Tree(os.Getpid()); tree[0] != os.Getpid() || !slices.Contains(tree, cmd.Process.Pid) {
		t.Errorf("tree of this process %v lacks itself first or its child %d", tree, cmd.Process.Pid)
	}
}

// Cores and Others follow from two samples: 10 s on 2 cores, 1,500 busy
// ticks, 600 + 40 of them in two groups: 0.6 and 0.04 cores, others 0.86.
func TestCoresAndOthers(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := Sample{At: t0, Busy: 1000, Total: 4000, Groups: []map[int]int64{{1: 100}, {2: 10}}}
	b := Sample{At: t0.Add(10 * time.Second), Busy: 2500, Total: 6000, Groups: []map[int]int64{{1: 700}, {2: 50}}}
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	if c := Cores(a, b, 0); !near(c, 0.6) {
		t.Errorf("group 0: %.3f cores, want 0.6", c)
	}
	if c := Cores(a, b, 1); !near(c, 0.04) {
		t.Errorf("group 1: %.3f cores, want 0.04", c)
	}
	if o := Others(a, b); !near(o, 0.86) {
		t.Errorf("others: %.3f cores, want 0.86", o)
	}
	if o := Others(b, a); o != 0 {
		t.Errorf("others of a reversed window: %.3f, want 0", o)
	}
}

// A group whose process restarted between the samples (its old pid gone
// with 900 ticks, a new one with 30) used 0.3 cores, not minus 8.7, and
// others never go below zero, even when the groups read above the machine.
func TestRestartsAndSkewAreNeverNegative(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := Sample{At: t0, Busy: 1000, Total: 4000, Groups: []map[int]int64{{1: 900}}}
	b := Sample{At: t0.Add(time.Second), Busy: 1020, Total: 4200, Groups: []map[int]int64{{2: 30}}}
	if c := Cores(a, b, 0); c < 0.3-1e-9 || c > 0.3+1e-9 {
		t.Errorf("restarted group: %.3f cores, want 0.3", c)
	}
	if o := Others(a, b); o != 0 {
		t.Errorf("others with the group above the machine's 0.2 cores: %.3f, want 0", o)
	}
	reused := Sample{At: t0.Add(time.Second), Busy: 1100, Total: 4200, Groups: []map[int]int64{{1: 40}}}
	if c := Cores(a, reused, 0); c < 0.4-1e-9 || c > 0.4+1e-9 {
		t.Errorf("pid reused by the restart: %.3f cores, want 0.4", c)
	}
}

// A process that burns CPU outside the group shows up as others'.
func TestOthersSeesABusyNeighbour(t *testing.T) {
	self := []Group{{Name: "self", Pids: func() []int { return []int{os.Getpid()} }}}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	a := Read(self)
	time.Sleep(time.Second)
	b := Read(self)
	if o := Others(a, b); o < 0.2 {
		t.Errorf("a spinning neighbour shows as %.2f other cores, want ≥ 0.2 (it has a core of its own to share)", o)
	}
}
