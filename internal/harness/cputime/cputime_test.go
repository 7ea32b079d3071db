package cputime

import "testing"

func TestProcessCPUGrows(t *testing.T) {
	a := Process()
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	if b := Process(); b <= a || x == 0 {
		t.Fatalf("CPU time did not grow: %v then %v", a, b)
	}
}
