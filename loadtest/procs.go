package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc CPU times: 100 on
// every Linux this runs on (it is fixed in the kernel's ABI).
const clockTicks = 100

// procGroup is a set of processes whose CPU is reported together.
type procGroup struct {
	Name string
	pids func() []int // read at every sample: processes may restart
}

// cpuSample is one reading of the machine's and the groups' CPU ticks.
type cpuSample struct {
	at          time.Time
	busy, total int64   // machine, all cores
	groups      []int64 // ticks per group, in the order of the groups
}

// readCPU samples the machine and groups.
func readCPU(groups []procGroup) cpuSample {
	s := cpuSample{at: time.Now()}
	s.busy, s.total = machineTicks()
	for _, g := range groups {
		var t int64
		for _, pid := range g.pids() {
			t += procTicks(pid)
		}
		s.groups = append(s.groups, t)
	}
	return s
}

// procTicks is utime+stime of pid (0 when it cannot be read).
func procTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: fields count from
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	s, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	return u + s
}

// machineTicks reads the first line of /proc/stat: busy (everything but
// idle and iowait) and total ticks over all cores.
func machineTicks() (busy, total int64) {
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

// childrenNamed returns the pids of the processes named comm whose parent
// is one of parents.
func childrenNamed(comm string, parents ...int) []int {
	want := map[int]bool{}
	for _, p := range parents {
		want[p] = true
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != comm {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if want[ppid] {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:open])))
			out = append(out, pid)
		}
	}
	return out
}

// Usage is where the CPU went in a step's measured window (the step after
// its warm-up), from /proc: per process group, the rest of the machine, and
// what the clients received.
type Usage struct {
	WindowS float64 `json:"windowS"`
	// Deliveries are the events the clients received in the window
	// (duplicates and canaries included, as the side-by-side harness counts).
	Deliveries int64      `json:"deliveries"`
	Frames     int64      `json:"frames"`
	Bytes      int64      `json:"bytes"`
	Groups     []GroupCPU `json:"groups"`
	Busy       float64    `json:"machineBusyShare"` // of all cores, 0..1
	Cores      int        `json:"cores"`
	Other      float64    `json:"otherCores"` // cores busy outside the groups
	MaxOther   float64    `json:"maxOtherCores"`
	Disturbed  bool       `json:"disturbed"` // Other > MaxOther: other processes competed
	Server     GroupCPU   `json:"server"`    // every group but the load generator
}

// GroupCPU is one group's share.
type GroupCPU struct {
	Name          string  `json:"name"`
	Cores         float64 `json:"cores"`         // CPU-seconds per second
	UsPerDelivery float64 `json:"usPerDelivery"` // CPU-µs per delivery
}

// FramesPerDelivery and BytesPerDelivery are what one delivery cost on
// the wire.
func (u *Usage) FramesPerDelivery() float64 { return ratio(u.Frames, u.Deliveries) }
func (u *Usage) BytesPerDelivery() float64  { return ratio(u.Bytes, u.Deliveries) }

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// usage computes the window between two samples.
func usage(groups []procGroup, a, b cpuSample, deliveries, frames, bytes int64, cores int, maxOther float64) *Usage {
	u := &Usage{WindowS: b.at.Sub(a.at).Seconds(), Deliveries: deliveries, Frames: frames, Bytes: bytes, Cores: cores, MaxOther: maxOther}
	if u.WindowS <= 0 {
		return u
	}
	var inGroups float64
	for i, g := range groups {
		secs := float64(b.groups[i]-a.groups[i]) / clockTicks
		inGroups += secs
		gc := GroupCPU{Name: g.Name, Cores: secs / u.WindowS}
		if deliveries > 0 {
			gc.UsPerDelivery = secs * 1e6 / float64(deliveries)
		}
		u.Groups = append(u.Groups, gc)
		if g.Name != loadGroup {
			u.Server.Cores += gc.Cores
			u.Server.UsPerDelivery += gc.UsPerDelivery
		}
	}
	u.Server.Name = "server"
	if dt := b.total - a.total; dt > 0 {
		u.Busy = float64(b.busy-a.busy) / float64(dt)
		u.Other = float64(b.busy-a.busy)/clockTicks/u.WindowS - inGroups/u.WindowS
	}
	u.Disturbed = u.Other > maxOther
	return u
}

// loadGroup names the load generator's own process.
const loadGroup = "load generator"

// pinSelf restricts every thread of this process to cpus (threads started
// later inherit it from the thread that starts them).
func pinSelf(cpus string) error { return pinPID(os.Getpid(), cpus) }

// pinPID restricts every thread of pid to cpus with taskset.
func pinPID(pid int, cpus string) error {
	path, err := exec.LookPath("taskset")
	if err != nil {
		return errTaskset
	}
	out, err := exec.Command(path, "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset -a -p -c %s %d: %v: %s", cpus, pid, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// errTaskset says pinning was asked for on a machine without taskset.
var errTaskset = errors.New("taskset not found (util-linux): cannot pin processes to CPUs")

// DeliveriesPerSec is the window's delivery rate.
func (u *Usage) DeliveriesPerSec() float64 {
	if u.WindowS <= 0 {
		return 0
	}
	return float64(u.Deliveries) / u.WindowS
}

// BusyPct is the machine's busy share in percent.
func (u *Usage) BusyPct() float64 { return u.Busy * 100 }

// line is the one-line summary printed after each step.
func (u *Usage) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cpu over %.1fs, %.0f deliveries/s: µs/delivery", u.WindowS, u.DeliveriesPerSec())
	for _, g := range u.Groups {
		fmt.Fprintf(&b, " %s %.2f (%.2f cores),", g.Name, g.UsPerDelivery, g.Cores)
	}
	fmt.Fprintf(&b, " server %.2f; %.3f frames and %.0f bytes/delivery; machine busy %.0f%% of %d cores, other processes %.2f cores",
		u.Server.UsPerDelivery, u.FramesPerDelivery(), u.BytesPerDelivery(), u.BusyPct(), u.Cores, u.Other)
	if u.Disturbed {
		fmt.Fprintf(&b, " — DISTURBED (> %.2f)", u.MaxOther)
	}
	return b.String()
}
