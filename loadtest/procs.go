package main

import (
	"errors"
	"fmt"
	"github.com/pixelflow/pixelflow/internal/harness/procstat"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

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
func usage(groups []procstat.Group, a, b procstat.Sample, deliveries, frames, bytes int64, cores int, maxOther float64) *Usage {
	u := &Usage{WindowS: b.At.Sub(a.At).Seconds(), Deliveries: deliveries, Frames: frames, Bytes: bytes, Cores: cores, MaxOther: maxOther}
	if u.WindowS <= 0 {
		return u
	}
	for i, g := range groups {
		gc := GroupCPU{Name: g.Name, Cores: procstat.Cores(a, b, i)}
		if deliveries > 0 {
			gc.UsPerDelivery = gc.Cores * u.WindowS * 1e6 / float64(deliveries)
		}
		u.Groups = append(u.Groups, gc)
		if g.Name != loadGroup {
			u.Server.Cores += gc.Cores
			u.Server.UsPerDelivery += gc.UsPerDelivery
		}
	}
	u.Server.Name = "server"
	if dt := b.Total - a.Total; dt > 0 {
		u.Busy = float64(b.Busy-a.Busy) / float64(dt)
		u.Other = procstat.Others(a, b)
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
