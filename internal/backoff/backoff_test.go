package backoff

import (
	"testing"
	"time"
)

func TestNextGrowsWithinBounds(t *testing.T) {
	var b Backoff
	lo, hi := 10*time.Millisecond, 80*time.Millisecond
	for i := 0; i < 20; i++ {
		want := min(lo<<i, hi)
		if i > 16 {
			want = hi
		}
		d := b.Next(lo, hi)
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %s outside [%s, %s]", i, d, want/2, want)
		}
	}
	b.Reset()
	if d := b.Next(lo, hi); d > lo {
		t.Fatalf("after Reset: %s > %s", d, lo)
	}
}
