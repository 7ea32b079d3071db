package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cputime"
)

// BenchmarkPlaceHTTPSteady is the load test's steady rate through the real
// API: 200 writes a second, paced, one at a time over a keep-alive
// connection, the relay publishing into a private redis-server. At this
// rate a relay batch is about one event, so the relay's store transactions
// per batch weigh on the CPU per write (BenchmarkPlaceHTTP, unpaced, makes
// large batches instead). cpu-µs/write is this process's CPU (server,
// relay, client; not redis-server) per write; run it with -benchtime 2000x
// (10 s). RELAY_MARK_DELAY from the environment is passed to the server.
func BenchmarkPlaceHTTPSteady(b *testing.B) {
	extra := map[string]string{}
	if v, ok := os.LookupEnv("RELAY_MARK_DELAY"); ok {
		extra["RELAY_MARK_DELAY"] = v
	}
	m := serveForBench(b, extra)
	url := "http://" + m.Addr + "/api/pixels"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	post := func(i int) {
		body := fmt.Sprintf(`{"gx":%d,"gy":%d,"color":"#%06X"}`, i%64, (i/64)%64, i&0xFFFFFF)
		resp, err := hc.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for i := range 200 { // warm: the canvas painted, the relay leading
		post(i * 617)
	}
	time.Sleep(200 * time.Millisecond)
	const every = time.Second / 200
	n := 0
	st0 := m.relay.Status()
	start, cpu0 := time.Now(), cputime.Process()
	for b.Loop() {
		n++
		time.Sleep(time.Until(start.Add(time.Duration(n) * every)))
		post(n * 617)
	}
	cpu := cputime.Process() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/write")
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "writes/s")
	if st := m.relay.Status(); st.Batches > st0.Batches {
		b.ReportMetric(float64(st.Published-st0.Published)/float64(st.Batches-st0.Batches), "events/relay-batch")
	}
}
