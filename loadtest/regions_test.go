package main

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/history"
)

// The regions scenario: 1,000 clients, 1,000 writes/s over a 1024×1024
// canvas, each client viewing 4×4 regions; flags still override, and
// regions refuse the binary wire and views larger than the canvas.
func TestRegionsScenario(t *testing.T) {
	p, err := parse([]string{"-scenario", "regions"})
	if err != nil || p.Clients != 1000 || p.Rate != 1000 || p.Canvas != 1024 || p.Region != 1024 || p.View != 4 || p.Topology != "serve" {
		t.Fatalf("regions: %+v %v", p, err)
	}
	if q, err := parse([]string{"-scenario", "regions", "-canvas", "512", "-region", "512", "-view", "2", "-clients", "10"}); err != nil || q.Canvas != 512 || q.View != 2 || q.Clients != 10 {
		t.Fatalf("regions with overrides: %+v %v", q, err)
	}
	if s, _ := parse([]string{"-scenario", "steady"}); s.Canvas != 64 || s.Region != 64 || s.View != 0 {
		t.Fatalf("steady keeps its 64×64 canvas and whole-canvas clients: %+v", s)
	}
	for _, args := range [][]string{
		{"-scenario", "regions", "-wire", "binary"},
		{"-scenario", "regions", "-canvas", "128", "-region", "128"}, // 4×4 regions do not fit
		{"-scenario", "regions", "-view", "-1"},
	} {
		if _, err := parse(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// A view is a square of regions inside the canvas; the result counts
// deliveries per region against viewers × writes.
func TestViewRegionsAndResult(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	size := canvas.Size{Width: 1024, Height: 1024}
	m := &regionMeter{side: 1024}
	for range 200 {
		v := viewRegions(rng, 1024, 4)
		if len(v) != 16 {
			t.Fatalf("view %v: want 16 regions", v)
		}
		if _, err := canvas.CheckRegions(size, v); err != nil {
			t.Fatalf("view %v: %v", v, err)
		}
		if x0, y0, _, _ := v[0].Bounds(size); v[15] != canvas.RegionOf(x0+3*64, y0+3*64) {
			t.Fatalf("view %v is not a 4×4 square", v)
		}
		m.view(v)
	}
	m.observe(client.Received{Event: canvas.Event{Kind: canvas.KindPixel, GX: 70, GY: 1}})
	m.observe(client.Received{Event: canvas.Event{Kind: canvas.KindPixel, GX: 70, GY: 1}, Dup: true})
	m.observe(client.Received{Event: canvas.Event{Kind: canvas.KindCanary}})
	res := m.result(4, []history.Write{{GX: 70, GY: 1, Outcome: history.OK}, {GX: 70, GY: 2, Outcome: history.Failed}},
		&history.Report{Clients: []history.Verdict{{Outside: 2}}})
	if len(res.Rows) != 256 || res.Deliveries != 1 || res.Rows[1].Writes != 1 || res.Expected != res.Rows[1].Viewers || res.Outside != 2 {
		t.Fatalf("result %+v", res)
	}
	var views int64
	for _, r := range res.Rows {
		views += r.Viewers
	}
	if views != 200*16 {
		t.Fatalf("%d views, want 3200", views)
	}
	var buf bytes.Buffer
	res.print(&buf)
	if !strings.Contains(buf.String(), "outside a client's regions 2") || !strings.Contains(string(res.plot()), "<svg") {
		t.Fatalf("print %q", buf.String())
	}
}
