package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cputime"
)

// BenchmarkSnapshotStorm: a full 1000×1000 canvas (every pixel painted
// from a 16-colour palette, seeded into the embedded store), then per
// iteration one write — so the snapshot must be built again, as after any
// change — followed by 1,000 concurrent GET /api/canvas in the page's form
// (binary, gzip), each over its own connection. It reports the process's
// CPU for the 1,000 requests (server and the clients reading the bodies;
// redis-server apart).
//
//	go test -run '^$' -bench SnapshotStorm -benchtime 3x ./cmd/pixelflow/
func BenchmarkSnapshotStorm(b *testing.B) {
	const size, requests = 1000, 1000
	m := NewMain()
	m.LogOutput = io.Discard
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0", "CANVAS_WIDTH": "1000", "CANVAS_HEIGHT": "1000",
		"INSTANCE_ID": "bench", "LOG_LEVEL": "error", "CANARY_INTERVAL": "0", "HTTP_WRITE_TIMEOUT": "2m"}
	if err := m.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
		b.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	palette := []canvas.Color{0xFFFFFF, 0xE4E4E4, 0x888888, 0x222222, 0xFFA7D1, 0xE50000, 0xE59500, 0xA06A42,
		0xE5D900, 0x94E044, 0x02BE01, 0x00D3DD, 0x0083C7, 0x0000EA, 0xCF6EE4, 0x820080}
	rng := rand.New(rand.NewPCG(1, 2))
	seedStart := time.Now()
	if err := m.store.Seed(context.Background(), size, size, func(int, int) canvas.Color { return palette[rng.IntN(len(palette))] }); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded 1000×1000 in %s", time.Since(seedStart).Round(time.Millisecond))
	base := "http://" + m.Addr
	if err := waitReady(base); err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	var bytes atomic.Int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		before, _ := m.store.Sequencer(context.Background())
		resp, err := http.Post(base+"/api/pixels", "application/json", strings.NewReader(`{"gx":1,"gy":1,"color":"#`+[]string{"E50000", "0000EA"}[i%2]+`"}`))
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("write: %v %v", resp, err)
		}
		resp.Body.Close()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if st, _ := m.store.Sequencer(context.Background()); st.Seq > before.Seq {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the write was never published")
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Its own connection, as 1,000 browsers would have.
				hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				req, _ := http.NewRequest(http.MethodGet, base+"/api/canvas", nil)
				req.Header.Set("Accept", "application/octet-stream")
				req.Header.Set("Accept-Encoding", "gzip") // set by hand: the body stays compressed
				<-start
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("GET: %d", resp.StatusCode)
				}
				bytes.Add(n)
			}()
		}
		b.StartTimer()
		cpu0 := cputime.Process()
		close(start)
		wg.Wait()
		cpu += cputime.Process() - cpu0
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/1000req")
	b.ReportMetric(float64(bytes.Load())/float64(b.N*requests), "bytes/resp")
}
