package main

import (
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is GOGC when the environment does not set it. The write
// path allocates a lot per placement (the embedded store copies a
// collection and its oplog for every write) while the live heap stays small
// (about 10 MB under the steady load test), so at Go's default of 100 the
// collector ran about nine times a second. At 400 it runs a quarter as
// often for a heap of about five times the live one; measured in
// docs/benchmarks.md (What changed what: BenchmarkPlaceHTTP with GOGC=100
// and 400, cpu-µs/write).
const defaultGCPercent = 400

// gcSettings returns what applyGCDefaults sets: GOGC unless the environment
// sets it, and, when the process runs under a cgroup memory limit and
// GOMEMLIMIT is not set, a soft memory limit of three quarters of it, so
// the larger heap the higher GOGC allows never runs into the limit. Zero
// means leave the runtime's value. readFile reads the cgroup file.
func gcSettings(getenv func(string) string, readFile func(string) ([]byte, error)) (percent int, limit int64) {
	if getenv("GOGC") == "" {
		percent = defaultGCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		if b, err := readFile("/sys/fs/cgroup/memory.max"); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
				limit = n / 4 * 3
			}
		}
	}
	return percent, limit
}

// applyGCDefaults applies gcSettings to the running process.
func applyGCDefaults(getenv func(string) string, readFile func(string) ([]byte, error)) {
	percent, limit := gcSettings(getenv, readFile)
	if percent != 0 {
		debug.SetGCPercent(percent)
	}
	if limit != 0 {
		debug.SetMemoryLimit(limit)
	}
}
