package main

import (
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/history"
)

func TestParseRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "huge"},
		{"-clients", "0"},
		{"-rate", "-5"},
		{"-duration", "10ms"},
		{"-region", "100", "-canvas", "64"},
		{"-api", "http://127.0.0.1:1"},
		{"-gateways", "0"},
		{"-topology", "mesh"},
		{"-scenario", "steady", "-topology", "serve", "-gateways", "2"},
		{"-cpus-server", "zero"},
		{"-cpus-load", "1;2"},
		{"-max-other", "-1"},
		{"-wire", "msgpack"},
		{"-scenario", "steady", "-redis-replicas", "3"},
		{"-scenario", "steady", "-redis-replicas", "1", "-wait-replicas", "2"},
		{"-scenario", "steady", "-wait-replicas", "1"},
		{"-scenario", "smoke", "-redis-replicas", "1"},
		{"-api", "http://127.0.0.1:1", "-gateways-urls", "http://127.0.0.1:2", "-cpus-load", "1"},
	} {
		if _, err := parse(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	p, err := parse([]string{"-scenario", "steady", "-clients", "20", "-duration", "5s"})
	if err != nil || p.Clients != 20 || p.Rate != 200 || p.Duration != 5*time.Second {
		t.Fatalf("steady with overrides: %+v %v", p, err)
	}
	if p.Topology != "serve" || p.Gateways != 1 || p.MaxOther != 0.25 || p.Wire != wireTimed {
		t.Fatalf("steady runs serve like the side-by-side harness: %+v", p)
	}
	if sm, _ := parse([]string{"-scenario", "smoke"}); sm.Topology != "cluster" || sm.Gateways != 2 {
		t.Fatalf("smoke runs a cluster of two gateways: %+v", sm)
	}
	if cl, err := parse([]string{"-scenario", "steady", "-gateways", "2", "-cpus-server", "0", "-cpus-load", "1"}); err != nil || cl.Topology != "cluster" || cl.CPUsServer != "0" || cl.CPUsLoad != "1" {
		t.Fatalf("two gateways make a cluster, pinned: %+v %v", cl, err)
	}
	if r, err := parse([]string{"-scenario", "steady", "-redis-replicas", "2", "-wait-replicas", "1"}); err != nil || r.RedisReplicas != 2 || r.WaitReplicas != 1 {
		t.Fatalf("-redis-replicas 2 -wait-replicas 1: %+v %v", r, err)
	}
	if b, err := parse([]string{"-scenario", "steady", "-wire", "binary"}); err != nil || b.Wire != wireBinary {
		t.Fatalf("-wire binary: %+v %v", b, err)
	}
	c, err := parse([]string{"-scenario", "capacity", "-rate", "500"})
	if err != nil || len(c.Steps) == 0 || c.Steps[0] != 600 {
		t.Fatalf("capacity from 500 should step from 600: %v %v", c.Steps, err)
	}
}

// Capacity's answer is the last step under the P99 limit that reached its
// rate, and nothing at all when anything was lost.
func TestLastGoodRate(t *testing.T) {
	q := func(p99 float64) *Quantiles { return &Quantiles{P99: p99} }
	r := &Report{Params: Params{Steps: []int{200, 400, 600}, P99Limit: 100 * time.Millisecond},
		Steps: []StepResult{{Rate: 200, Achieved: 200, Delivery: q(10)}, {Rate: 400, Achieved: 399, Delivery: q(60)}, {Rate: 600, Achieved: 600, Delivery: q(150)}}}
	if got := r.LastGoodRate(); got != 400 {
		t.Errorf("last good rate = %d, want 400", got)
	}
	r.Steps[1].Achieved = 300 // rate not reached
	if got := r.LastGoodRate(); got != 200 {
		t.Errorf("last good rate = %d, want 200", got)
	}
	r.History = &history.Report{Clients: []history.Verdict{{Client: "c", Lost: 1}}}
	if got := r.LastGoodRate(); got != 0 {
		t.Errorf("with a loss the last good rate = %d, want 0", got)
	}
}

// The HDR percentile plot's points: 1/(1-q) from 2 up to the count, each
// the histogram's value at that percentile; its ticks read as percentiles.
func TestPercentileSpectrum(t *testing.T) {
	h := newHist()
	for i := int64(1); i <= 10000; i++ {
		if err := h.RecordValue(i * 1000); err != nil { // 1 ms … 10 s, in µs
			t.Fatal(err)
		}
	}
	pts := percentileSpectrum(h)
	if len(pts) < 30 || pts[0][0] != 2 || pts[len(pts)-1][0] > 10000 {
		t.Fatalf("%d points from %v to %v, want ten per decade from 2 to ≤ 10000", len(pts), pts[0], pts[len(pts)-1])
	}
	for i := 1; i < len(pts); i++ {
		if pts[i][1] < pts[i-1][1] {
			t.Fatalf("latency falls with the percentile: %v then %v", pts[i-1], pts[i])
		}
	}
	for _, p := range pts {
		if want := 10 * (1 - 1/p[0]) * 1000; p[1] < want*0.99-1 || p[1] > want*1.01+1 {
			t.Errorf("at 1/(1-q) = %.1f: %.1f ms, want ≈ %.1f", p[0], p[1], want)
		}
	}
	if got := percentileSpectrum(newHist()); got != nil {
		t.Errorf("empty histogram: %v", got)
	}
	for x, want := range map[float64]string{10: "90%", 100: "99%", 1000: "99.9%", 2: "50%"} {
		if got := percentileTick(x); got != want {
			t.Errorf("tick %v = %q, want %q", x, got, want)
		}
	}
}
