package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cputime"
)

// BenchmarkPlaceHTTP measures writes/s through the real API, with the relay
// publishing into a private redis-server concurrently: the embedded store,
// a 64×64 canvas, 8 concurrent writers over keep-alive connections.
func BenchmarkPlaceHTTP(b *testing.B) {
	m := serveForBench(b, nil)
	url := "http://" + m.Addr + "/api/pixels"
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	var n atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS writers
	start, cpu0 := time.Now(), cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"gx":%d,"gy":%d,"color":"#%06X"}`, i%64, (i/64)%64, i&0xFFFFFF)
			resp, err := hc.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "writes/s")
	if cpu := cputime.Process() - cpu0; cpu > 0 && n.Load() > 0 {
		// Server, relay and client share the process; redis-server does not.
		b.ReportMetric(float64(cpu.Microseconds())/float64(n.Load()), "cpu-µs/write")
	}
	if st := m.relay.Status(); st.Batches > 0 {
		b.ReportMetric(float64(st.Published)/float64(st.Batches), "events/relay-batch")
	}
	if backlog, _, err := m.store.Backlog(context.Background()); err == nil {
		b.ReportMetric(float64(backlog), "backlog-at-end")
	}
}

// serveForBench runs `serve` in this process on the embedded store in
// memory (64×64 canvas, no rate limit, a private redis-server), with extra
// settings on top, until b ends.
func serveForBench(b *testing.B, extra map[string]string) *Main {
	b.Helper()
	m := NewMain()
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "CANVAS_WIDTH": "64", "CANVAS_HEIGHT": "64", "INSTANCE_ID": "bench", "LOG_LEVEL": "error"}
	for k, v := range extra {
		env[k] = v
	}
	if err := m.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
		b.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	return m
}
