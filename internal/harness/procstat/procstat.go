// Package procstat reads CPU time from Linux's /proc: of the machine, of
// chosen processes, and so of everything else. The load test reports CPU per
// delivery with it, and both the load test and the drills use it to tell a
// measurement disturbed by other processes from one that is not: on a
// 2-core machine a build next door moves latency figures more than any
// change under test. Elsewhere than Linux every reading is zero.
package procstat

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
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
	Busy, Total int64   // machine, all cores
	Groups      []int64 // ticks per group, in the order of the groups
}

// Read samples the machine and groups.
func Read(groups []Group) Sample {
	s := Sample{At: time.Now()}
	s.Busy, s.Total = MachineTicks()
	for _, g := range groups {
		var t int64
		for _, pid := range g.Pids() {
			t += ProcTicks(pid)
		}
		s.Groups = append(s.Groups, t)
	}
	return s
}

// Cores is the CPU-seconds per second that group i used between a and b.
func Cores(a, b Sample, i int) float64 {
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 || i >= len(a.Groups) || i >= len(b.Groups) {
		return 0
	}
	return float64(b.Groups[i]-a.Groups[i]) / ClockTicks / secs
}

// Others is the CPU-seconds per second the machine was busy between a and
// b outside every group: other processes' share. A process of a group that
// exited in between takes its ticks with it, so they count as others'.
func Others(a, b Sample) float64 {
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 || b.Total <= a.Total {
		return 0
	}
	other := float64(b.Busy-a.Busy) / ClockTicks / secs
	for i := range a.Groups {
		other -= Cores(a, b, i)
	}
	return other
}

// ProcTicks is utime+stime of pid (0 when it cannot be read).
func ProcTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := statFields(b)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	s, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	return u + s
}

// statFields are the fields of a /proc/<pid>/stat after the command name
// (which may hold spaces and parentheses: fields count from the last ')').
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// MachineTicks reads the first line of /proc/stat: busy (everything but
// idle and iowait) and total ticks over all cores.
func MachineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 7 || i == 8 { // guest time is already counted in user
			continue
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// proc is one process of the table: its pid, parent and command name.
type proc struct {
	pid, ppid int
	comm      string
}

// table reads every process's pid, parent and name.
func table() []proc {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make([]proc, 0, len(stats))
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:open])))
		ppid, _ := strconv.Atoi(f[1])
		out = append(out, proc{pid: pid, ppid: ppid, comm: string(b[open+1 : end])})
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
