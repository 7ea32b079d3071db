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
