// Package procstat reads CPU time from Linux's /proc (parsed by
// prometheus/procfs, which the metrics library already links): of the
// machine, of chosen processes, and so of everything else. The load test
// reports CPU per
// delivery with it, and both the load test and the drills use it to tell a
// measurement disturbed by other processes from one that is not: on a
// 2-core machine a build next door moves latency figures more than any
// change under test. Elsewhere than Linux every reading is zero.
package procstat

import (
	"math"
	"slices"
	"time"

	"github.com/prometheus/procfs"
)

// ClockTicks is the kernel's USER_HZ, the unit of /proc CPU times: 100 on
// every Linux this runs on (it is fixed in the kernel's ABI).
const ClockTicks = 100

// Group is a set of processes whose CPU is reported together.
type Group struct {
	Name string
	Pids func() []int // read at every sample: processes may restart
}

// Sample is one reading of the machine's and the groups' CPU ticks.
type Sample struct {
	At          time.Time
	Busy, Total int64 // machine, all cores
	// Groups are the ticks of each group's processes by pid, in the order
	// of the groups: per process, so a process that exits or restarts
	// between two samples takes only its own ticks with it instead of
	// making its group's difference negative.
	Groups []map[int]int64
}

// Read samples the machine and groups.
func Read(groups []Group) Sample {
	s := Sample{At: time.Now()}
	s.Busy, s.Total = MachineTicks()
	for _, g := range groups {
		t := map[int]int64{}
		for _, pid := range g.Pids() {
			t[pid] = ProcTicks(pid)
		}
		s.Groups = append(s.Groups, t)
	}
	return s
}

// Cores is the CPU-seconds per second that group i used between a and b,
// never negative: a process in both samples counts its difference, one
// that started in between (a restart: a new pid, or the pid reused, its
// counter lower) all its ticks, one that exited in between nothing.
func Cores(a, b Sample, i int) float64 {
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 || i >= len(a.Groups) || i >= len(b.Groups) {
		return 0
	}
	var ticks int64
	for pid, t := range b.Groups[i] {
		if before, ok := a.Groups[i][pid]; ok && before <= t {
			t -= before
		}
		ticks += t
	}
	return float64(ticks) / ClockTicks / secs
}

// Others is the CPU-seconds per second the machine was busy between a and
// b outside every group: other processes' share. A process of a group that
// exited in between takes its ticks with it, so they count as others'. It
// is never negative: the machine's ticks and a process's are counted by
// different clocks, and a group that used nearly all the machine may read
// a little above it.
func Others(a, b Sample) float64 {
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 || b.Total <= a.Total {
		return 0
	}
	other := float64(b.Busy-a.Busy) / ClockTicks / secs
	for i := range a.Groups {
		other -= Cores(a, b, i)
	}
	return max(0, other)
}

// ProcTicks is utime+stime of pid (0 when it cannot be read).
func ProcTicks(pid int) int64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return int64(st.UTime + st.STime)
}

// MachineTicks reads /proc/stat's cpu line: busy (everything but idle and
// iowait) and total ticks over all cores. Guest time is already counted in
// user time, so it is not added again.
func MachineTicks() (busy, total int64) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, 0
	}
	st, err := fs.Stat()
	if err != nil {
		return 0, 0
	}
	c := st.CPUTotal // seconds: procfs divides the ticks by USER_HZ
	ticks := func(secs float64) int64 { return int64(math.Round(secs * ClockTicks)) }
	busy = ticks(c.User) + ticks(c.Nice) + ticks(c.System) + ticks(c.IRQ) + ticks(c.SoftIRQ) + ticks(c.Steal)
	return busy, busy + ticks(c.Idle) + ticks(c.Iowait)
}

// proc is one process of the table: its pid, parent and command name.
type proc struct {
	pid, ppid int
	comm      string
}

// table reads every process's pid, parent and name (a process that exits
// while it is read is left out).
func table() []proc {
	all, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	out := make([]proc, 0, len(all))
	for _, p := range all {
		st, err := p.Stat()
		if err != nil {
			continue
		}
		out = append(out, proc{pid: st.PID, ppid: st.PPID, comm: st.Comm})
	}
	return out
}

// ChildrenNamed returns the pids of the processes named comm whose parent
// is one of parents.
func ChildrenNamed(comm string, parents ...int) []int {
	var out []int
	for _, p := range table() {
		if p.comm == comm && slices.Contains(parents, p.ppid) {
			out = append(out, p.pid)
		}
	}
	return out
}

// Tree returns root and every process descended from it.
func Tree(root int) []int {
	children := map[int][]int{}
	for _, p := range table() {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}
