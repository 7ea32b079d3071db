//go:build !unix

package main

import "time"

// processCPU is not measured here; the benchmark then omits CPU per write.
func processCPU() time.Duration { return 0 }
