//go:build !unix

package cputime

import "time"

// Process is not measured on this platform: benchmarks then omit CPU per
// operation.
func Process() time.Duration { return 0 }
