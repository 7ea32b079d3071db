package quantiles_test

import (
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/quantiles"
)

func TestMillis(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := quantiles.Millis(d, 0.5, 0.99, 1)
	if got[0] != 51 || got[1] != 100 || got[2] != 100 {
		t.Fatalf("P50, P99, max of 1..100 ms = %v, want 51 100 100", got)
	}
	if d[0] != 100*time.Millisecond {
		t.Fatal("the samples were reordered")
	}
	if got := quantiles.Millis(nil, 0.5, 0.99); got[0] != 0 || got[1] != 0 {
		t.Fatalf("quantiles of nothing = %v", got)
	}
	if got := quantiles.Millis([]time.Duration{1500 * time.Microsecond}, 0.5); got[0] != 1.5 {
		t.Fatalf("one sample of 1.5 ms: %v", got)
	}
}
