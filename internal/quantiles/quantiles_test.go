package quantiles_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pixelflow/pixelflow/internal/quantiles"
)

func TestMillis(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := quantiles.Millis(d, 0, 0.29, 0.5, 0.99, 1)
	if got[0] != 1 || got[1] != 29 || got[2] != 50 || got[3] != 99 || got[4] != 100 {
		t.Fatalf("min, P29, P50, P99, max of 1..100 ms = %v, want 1 29 50 99 100", got)
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

// TestAgreesWithTheLoadTestsHistogram: the load test reports its
// quantiles from an HDR histogram; the dashboard and the drills from
// Millis. On the same samples they must name the same sample (to the
// histogram's 3 significant digits), or one P99 would mean two things.
func TestAgreesWithTheLoadTestsHistogram(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 7, 100, 1000, 4321} {
		h := hdrhistogram.New(1, 300_000_000, 3)
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(1+r.IntN(200_000)) * time.Microsecond
			if err := h.RecordValue(d[i].Microseconds()); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			got := quantiles.Millis(d, q)[0]
			want := float64(h.ValueAtQuantile(q*100)) / 1000
			if diff := got - want; diff > want*0.001+0.001 || diff < -(want*0.001+0.001) {
				t.Errorf("n=%d q=%v: Millis %vms, HDR %vms", n, q, got, want)
			}
		}
	}
}
