package main

import (
	"github.com/pixelflow/pixelflow/internal/harness/procstat"
	"testing"
	"time"
)

// The window's figures follow from two samples: per group, per delivery,
// the server's sum without the load generator, and what the rest of the
// machine used, flagged past the bound.
func TestUsage(t *testing.T) {
	groups := []procstat.Group{{Name: "pixelflow serve"}, {Name: "redis-server"}, {Name: loadGroup}}
	t0 := time.Unix(100, 0)
	a := procstat.Sample{At: t0, Busy: 1000, Total: 4000, Groups: []map[int]int64{{1: 100}, {2: 10}, {3: 50}}}
	// 10 s on 2 cores: 2000 ticks in all, 1500 busy; serve 600 ticks,
	// redis 40, load 300: 940 in groups, 560 elsewhere.
	b := procstat.Sample{At: t0.Add(10 * time.Second), Busy: 2500, Total: 6000, Groups: []map[int]int64{{1: 700}, {2: 50}, {3: 350}}}
	u := usage(groups, a, b, 400_000, 200_000, 80_000_000, 2, 0.25)
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	switch {
	case !near(u.Groups[0].Cores, 0.6) || !near(u.Groups[0].UsPerDelivery, 15):
		t.Errorf("serve %+v, want 0.6 cores and 15 µs/delivery", u.Groups[0])
	case !near(u.Server.UsPerDelivery, 16) || !near(u.Server.Cores, 0.64):
		t.Errorf("server %+v, want serve+redis: 16 µs/delivery, 0.64 cores", u.Server)
	case !near(u.Busy, 0.75) || !near(u.Other, 0.56) || !u.Disturbed:
		t.Errorf("busy %.2f other %.2f disturbed %v, want 0.75, 0.56, true", u.Busy, u.Other, u.Disturbed)
	case !near(u.FramesPerDelivery(), 0.5) || !near(u.BytesPerDelivery(), 200) || !near(u.DeliveriesPerSec(), 40000):
		t.Errorf("wire %.2f frames %.0f bytes %.0f/s", u.FramesPerDelivery(), u.BytesPerDelivery(), u.DeliveriesPerSec())
	}
	if u := usage(groups, a, b, 400_000, 0, 0, 2, 1); u.Disturbed {
		t.Errorf("0.56 other cores flagged under a bound of 1")
	}
}
