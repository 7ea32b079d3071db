//go:build unix

package gateway

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used so far.
// Benchmarks report CPU per operation next to wall time because the machine
// is shared: wall time swings with other load, CPU spent mostly does not.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
