package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/apitest"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// runMain runs the real program in-process on port 0 with a memory store.
func runMain(t *testing.T, env map[string]string, args ...string) *Main {
	t.Helper()
	return runMainWith(t, env, nil, args...)
}

// runMainWith is runMain with setup applied to the Main before Run (nil:
// none).
func runMainWith(t *testing.T, env map[string]string, setup func(*Main), args ...string) *Main {
	t.Helper()
	m := NewMain()
	getenv := func(k string) string { return env[k] }
	if err := m.ParseFlags(args, getenv); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	if setup != nil {
		setup(m)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

func post(t *testing.T, base, body string, hdr ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/pixels", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// TestServeEndToEnd: a POSTed pixel reaches a WebSocket client through the
// real relay, a private redis-server and the gateway, all in one process.
func TestServeEndToEnd(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "INSTANCE_ID": "t1"}, "serve")
	base := "http://" + m.Addr
	c := client.New(client.Options{BaseURL: base, Name: "c1"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Events, not the first epoch's resync, are what this test counts: the
	// writes start once the gateway follows the epoch and the client holds
	// its snapshot (on a loaded machine the first epoch can start after the
	// first writes, and the resync's snapshot then carries them all).
	waitEpoch(t, m)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st := c.Stats(); c.Position().Epoch == m.gateway.Stats().Epoch && st.Snapshots > 0 && !st.SnapshotPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client never joined epoch %q: at %v, %+v", m.gateway.Stats().Epoch, c.Position(), c.Stats())
		}
	}

	want := map[[2]int]string{}
	for i := 0; i < 30; i++ {
		body := `{"gx":` + itoa(i%7) + `,"gy":` + itoa(i%5) + `,"color":"#00FF` + hex2(i) + `"}`
		resp, _ := post(t, base, body)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d", body, resp.StatusCode)
		}
		want[[2]int{i % 7, i % 5}] = "#00FF" + hex2(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.Canvas()
		ok := len(got) == len(want)
		for k, col := range want {
			ok = ok && got[k].Color.String() == col
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client canvas %v never converged to %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h := c.History(); len(h) < 30 {
		t.Fatalf("client received %d events, want ≥ 30", len(h))
	}

	// The binary snapshot carries the same colours.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/canvas", nil)
	req.Header.Set("Accept", "application/octet-stream")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	w := m.Config.Width
	if len(raw) != w*m.Config.Height*3 || resp.Header.Get("X-Stream-Epoch") == "" {
		t.Fatalf("binary snapshot %d bytes, epoch %q", len(raw), resp.Header.Get("X-Stream-Epoch"))
	}
	for k, col := range want {
		i := (k[1]*w + k[0]) * 3
		if got := "#" + strings.ToUpper(hexb(raw[i:i+3])); got != col {
			t.Fatalf("binary pixel %v = %s, want %s", k, got, col)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/api/health"} {
		resp, err := http.Get(base + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp.StatusCode, err)
		}
		resp.Body.Close()
	}
}

// TestBadInputChangesNothing: every malformed request gets a clear 4xx JSON
// error and the canvas stays as it was.
func TestBadInputChangesNothing(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "CANVAS_WIDTH": "64", "CANVAS_HEIGHT": "64", "INSTANCE_ID": "t2"}, "serve")
	base := "http://" + m.Addr
	if resp, _ := post(t, base, `{"gx":1,"gy":1,"color":"#123456"}`); resp.StatusCode != 201 {
		t.Fatalf("good POST: %d", resp.StatusCode)
	}
	before := snapshot(t, base)
	apitest.CheckBadRequests(t, base, 64, 64)
	if after := snapshot(t, base); after != before {
		t.Fatalf("bad requests changed the canvas:\n%s\n%s", before, after)
	}
}

func TestIdempotencyKeyOverHTTP(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "INSTANCE_ID": "t3"}, "serve")
	base := "http://" + m.Addr
	body := `{"gx":2,"gy":3,"color":"#ABCDEF"}`
	r1, a := post(t, base, body, "Idempotency-Key", "abc-1")
	r2, b := post(t, base, body, "Idempotency-Key", "abc-1")
	if r1.StatusCode != 201 || r2.StatusCode != 201 || a["id"] != b["id"] || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry answered %d %v, first %d %v", r2.StatusCode, b, r1.StatusCode, a)
	}
	if r3, _ := post(t, base, `{"gx":2,"gy":4,"color":"#ABCDEF"}`, "Idempotency-Key", "abc-1"); r3.StatusCode != http.StatusConflict {
		t.Fatalf("reused key for another pixel: %d, want 409", r3.StatusCode)
	}
	var snap struct{ Pixels []struct{ Version int } }
	_ = json.Unmarshal([]byte(snapshot(t, base)), &snap)
	if len(snap.Pixels) != 1 || snap.Pixels[0].Version != 1 {
		t.Fatalf("snapshot %+v: want one pixel at version 1", snap)
	}
}

func TestRateLimit(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "1", "RATE_BURST": "2", "INSTANCE_ID": "t4"}, "serve")
	base := "http://" + m.Addr
	var limited *http.Response
	for i := 0; i < 5 && limited == nil; i++ {
		if resp, _ := post(t, base, `{"gx":0,"gy":0,"color":"#000000"}`); resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
		}
	}
	if limited == nil || limited.Header.Get("Retry-After") == "" {
		t.Fatal("no 429 with Retry-After within 5 rapid writes at 1/s burst 2")
	}
}

func TestBadConfigNamesTheSetting(t *testing.T) {
	for env, val := range map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,nope", "MAX_CONNS_PER_IP": "0", "ADMIN_ADDR": "nowhere", "PPROF": "yes", "HTTP_READ_TIMEOUT": "1ms", "IDEMPOTENCY_KEYS": "-3", "API_ADMIN_URL": "ftp://x", "PORT": "abc", "CANVAS_WIDTH": "0", "REDIS_URL": "localhost:6379", "MONGO_URI": "http://x", "LEASE_TTL": "fast", "RATE_LIMIT": "-1", "LOG_LEVEL": "loud", "LOG_FORMAT": "xml", "CLIENT_QUEUE": "0", "GROUP_TTL": "500ms"} {
		err := NewMain().ParseFlags([]string{"serve"}, func(k string) string {
			if k == env {
				return val
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("%s=%q: error %v does not name the setting", env, val, err)
		}
	}
	if err := NewMain().ParseFlags([]string{"relay"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "MONGO_URI") {
		t.Errorf("relay without MongoDB: %v", err)
	}
	if err := NewMain().ParseFlags([]string{"fly"}, func(string) string { return "" }); err == nil {
		t.Error("unknown role accepted")
	}
}

// TestRedisURLIsUsed: with REDIS_URL set no private redis-server is started.
func TestRedisURLIsUsed(t *testing.T) {
	srv := redistest.MustStart(t, false)
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "REDIS_URL": srv.URL(), "INSTANCE_ID": "t5"}, "serve")
	if m.redisSrv != nil {
		t.Fatal("started a private redis-server although REDIS_URL was set")
	}
	if resp, _ := post(t, "http://"+m.Addr, `{"gx":0,"gy":0,"color":"#000000"}`); resp.StatusCode != 201 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

func snapshot(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/canvas")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Width, Height int
		Pixels        any
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func hex2(i int) string { return strings.ToUpper(hexb([]byte{byte(i)})) }

func hexb(b []byte) string {
	const d = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, d[c>>4], d[c&15])
	}
	return string(out)
}

func TestPageIsServed(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "INSTANCE_ID": "t6"}, "serve")
	for path, want := range map[string]string{"/": "<canvas", "/app.js": "application/octet-stream", "/wire.js": "pixelflow.v1.bin", "/ops": "pipeline", "/ops.js": "/ops/data"} {
		resp, err := http.Get("http://" + m.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

// TestProbe: the container healthcheck says ready only for a ready process.
func TestProbe(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "INSTANCE_ID": "t6"}, "serve")
	ctx := context.Background()
	// The server is ready once its gateway follows the stream: the probe
	// must say so within a few seconds, and say why until then.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := probe(ctx, []string{"http://" + m.Addr + "/readyz"}, func(string) string { return "" })
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe of a started server never succeeded: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := probe(ctx, []string{"http://" + m.Addr + "/nope"}, func(string) string { return "" }); err == nil {
		t.Error("probe accepted a 404")
	}
	port, _ := redisproc.FreePort()
	if err := probe(ctx, nil, func(k string) string { return map[string]string{"PORT": itoa(port)}[k] }); err == nil {
		t.Error("probe of a closed port succeeded")
	}
	if err := probe(ctx, []string{"a", "b"}, func(string) string { return "" }); err == nil {
		t.Error("probe took two arguments")
	}
}

// TestMetricsMoveWhenPixelsFlow scrapes /metrics: every series the
// dashboards read exists, and the counters move when pixels flow.
func TestMetricsMoveWhenPixelsFlow(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "INSTANCE_ID": "t7", "CANARY_INTERVAL": "100ms", "CANARY_BOUND": "5s"}, "serve")
	base := "http://" + m.Addr
	scrape := func() map[string]float64 {
		t.Helper()
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out := map[string]float64{}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
				v, _ := strconv.ParseFloat(f[1], 64)
				out[f[0]] = v
			}
		}
		return out
	}
	before := scrape()
	for _, name := range []string{"pixelflow_outbox_backlog", "pixelflow_outbox_oldest_pending_age_seconds", "pixelflow_store_txn_retries_total",
		"pixelflow_relay_published_total", "pixelflow_relay_batches_total", "pixelflow_relay_store_transactions_total", "pixelflow_relay_folded_marks_total",
		"pixelflow_relay_leader", "pixelflow_relay_epoch_changes_total",
		"pixelflow_stream_length", "pixelflow_gateway_clients", "pixelflow_gateway_degraded_total", "pixelflow_gateway_resyncs_total",
		"pixelflow_gateway_reaped_total", "pixelflow_gateway_lag", "pixelflow_gateway_pending", "pixelflow_canary_latency_seconds", "pixelflow_gateway_commit_to_broadcast_seconds_count", "go_goroutines"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for i := 0; i < 20; i++ {
		if resp, _ := post(t, base, `{"gx":`+itoa(i)+`,"gy":1,"color":"#0000FF"}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := scrape()
		moved := after["pixelflow_relay_published_total"] >= before["pixelflow_relay_published_total"]+20 &&
			after["pixelflow_gateway_commit_to_broadcast_seconds_count"] >= before["pixelflow_gateway_commit_to_broadcast_seconds_count"]+20 &&
			after[`pixelflow_http_requests_total{code="201",method="post",route="/api/pixels"}`] >= 20 &&
			after["pixelflow_stream_length"] >= 20 && after["pixelflow_relay_leader"] == 1 && after["pixelflow_canary_latency_seconds"] > 0
		if moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics did not move with 20 pixels: before %v after %v", before, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGatewayRoleServesHealth: a gateway-only process answers its health
// endpoints and metrics (it has no API of its own).
func TestGatewayRoleServesHealth(t *testing.T) {
	srv := redistest.MustStart(t, false)
	m := runMain(t, map[string]string{"PORT": "0", "REDIS_URL": srv.URL(), "INSTANCE_ID": "g9", "CANARY_BOUND": "0"}, "gateway")
	base := "http://" + m.Addr
	for _, path := range []string{"/healthz", "/api/health", "/metrics"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
}

// TestOpsData: the dashboard's JSON carries the pipeline's figures, this
// gateway's among them, and they move when pixels flow.
func TestOpsData(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "INSTANCE_ID": "ops1"}, "serve")
	base := "http://" + m.Addr
	for i := 0; i < 5; i++ {
		if resp, _ := post(t, base, `{"gx":`+itoa(i)+`,"gy":0,"color":"#00AA00"}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	var d struct {
		StreamLength int64 `json:"streamLength"`
		Outbox       struct {
			Backlog *int `json:"backlog"`
		} `json:"outbox"`
		Gateways []struct {
			ID    string  `json:"id"`
			P99Ms float64 `json:"commitToBroadcastP99Ms"`
		} `json:"gateways"`
		Errors []string `json:"errors"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/ops/data")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if d.StreamLength >= 5 && d.Outbox.Backlog != nil && len(d.Gateways) == 1 && d.Gateways[0].ID == "ops1" && d.Gateways[0].P99Ms > 0 && len(d.Errors) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ops/data never showed the flow: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeFailureSurfaces: when the HTTP server stops serving on its own
// after Run returned (here its listener is closed under it), Done is
// closed and Close reports why, instead of the process staying up deaf.
func TestServeFailureSurfaces(t *testing.T) {
	m := NewMain()
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "INSTANCE_ID": "t-serve-err"}
	if err := m.ParseFlags([]string{"api"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
		t.Fatal("Done closed while the server serves")
	default:
	}
	_ = m.listener.Close()
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after serving failed")
	}
	err := m.Close()
	if err == nil || !strings.Contains(err.Error(), "http server on "+m.Addr+" stopped") {
		t.Fatalf("Close after serving failed: %v, want the server's failure", err)
	}
}

// TestCleanCloseReportsNothing: a Close that stops the server itself is
// not a serving failure.
func TestCleanCloseReportsNothing(t *testing.T) {
	m := NewMain()
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "INSTANCE_ID": "t-clean"}
	if err := m.ParseFlags([]string{"api"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("clean close: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

// TestHealthKeysAreLowerCamel: /api/health speaks one JSON style, every
// key at every depth lowerCamel (docs/api.md), including the gateway's
// and the relay's sections.
func TestHealthKeysAreLowerCamel(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "INSTANCE_ID": "camel"}, "serve")
	resp, err := http.Get("http://" + m.Addr + "/api/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"outbox", "relay", "gateway"} {
		if _, ok := h[section].(map[string]any); !ok {
			t.Fatalf("/api/health has no %q section: %v", section, h)
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, sub := range v {
				if !lowerCamel(k) {
					t.Errorf("/api/health key %s.%s is not lowerCamel", path, k)
				}
				walk(path+"."+k, sub)
			}
		case []any:
			for _, sub := range v {
				walk(path+"[]", sub)
			}
		}
	}
	walk("", h)
}

func lowerCamel(k string) bool {
	if k == "" || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for _, r := range k {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// TestSecondProcessOnDataDirIsRefused: a second pixelflow on the same
// DATA_DIR (here a second Main in this process: flock conflicts per open
// file, so it stands for a second process) refuses to start with one line
// naming the directory and the holder's pid; after the first closes, the
// directory is free again. Without the lock both would open the store file
// and each acknowledge writes the other overwrites.
func TestSecondProcessOnDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DATA_DIR": dir, "PORT": "0", "INSTANCE_ID": "t1"}
	first := NewMain()
	if err := first.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := first.Run(context.Background()); err != nil {
		t.Fatalf("first run: %v", err)
	}
	second := NewMain()
	if err := second.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	err := second.Run(context.Background())
	_ = second.Close()
	if err == nil {
		t.Fatal("a second pixelflow started on the same DATA_DIR")
	}
	msg := err.Error()
	for _, want := range []string{strconv.Quote(dir), "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line", msg)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	runMain(t, env, "serve") // the directory is free again
}

// TestClientConvergesAfterMemoryStoreRestart: a store restarted empty
// (DATA_DIR=memory, Redis kept) starts versions over at 1. A client that
// held (1,1) at v3 and (2,2) gets a resync (new epoch) and must end with
// exactly the new canvas: (1,1) in the colour written after the restart, at
// v1, and no (2,2). Merging the snapshot by version kept the old pixels.
func TestClientConvergesAfterMemoryStoreRestart(t *testing.T) {
	srv := redistest.MustStart(t, false)
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATA_DIR": "memory", "HOST": "127.0.0.1", "PORT": strconv.Itoa(port), "REDIS_URL": srv.URL(), "RATE_LIMIT": "0", "INSTANCE_ID": "t-restart"}
	first := NewMain()
	if err := first.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + first.Addr
	c := client.New(client.Options{BaseURL: base, Name: "c1"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, b := range []string{`{"gx":1,"gy":1,"color":"#111111"}`, `{"gx":1,"gy":1,"color":"#222222"}`, `{"gx":1,"gy":1,"color":"#333333"}`, `{"gx":2,"gy":2,"color":"#AAAAAA"}`} {
		if resp, _ := post(t, base, b); resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d", b, resp.StatusCode)
		}
	}
	waitCanvas := func(want map[[2]int]client.CanvasPixel) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := c.Canvas()
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("client canvas %v, want exactly %v (stats %+v)", got, want, c.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCanvas(map[[2]int]client.CanvasPixel{{1, 1}: {Color: 0x333333, Version: 3}, {2, 2}: {Color: 0xAAAAAA, Version: 1}})

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// The first server closed its keep-alive connections, but the client's
	// pool drops one only once its reader sees the close: on busy cores a
	// POST could still take it and read EOF (a POST is not retried). Dial
	// the restarted server afresh.
	http.DefaultClient.CloseIdleConnections()
	runMain(t, env, "serve") // same port, same Redis, an empty store
	if resp, out := post(t, base, `{"gx":1,"gy":1,"color":"#444444"}`); resp.StatusCode != http.StatusCreated || out["version"] != float64(1) {
		t.Fatalf("POST after the restart: %d %v (want version 1: the store starts over)", resp.StatusCode, out)
	}
	waitCanvas(map[[2]int]client.CanvasPixel{{1, 1}: {Color: 0x444444, Version: 1}})
	if st := c.Stats(); st.Resyncs == 0 && st.Connects < 2 {
		t.Errorf("the client converged without a resync or a new hello: %+v", st)
	}
}

// TestNoRedisSaysSoBeforeTouchingDataDir: without REDIS_URL and without a
// redis-server on PATH (the container image: docker run pixelflow:local)
// serve stops with one line naming REDIS_URL, before it creates a store in
// DATA_DIR.
func TestNoRedisSaysSoBeforeTouchingDataDir(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := filepath.Join(t.TempDir(), "data")
	m := NewMain()
	env := map[string]string{"DATA_DIR": dir, "PORT": "0", "INSTANCE_ID": "noredis"}
	if err := m.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	defer m.Close()
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL is not set") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("serve without redis-server or REDIS_URL: %v; want one line naming REDIS_URL", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("DATA_DIR was written before the missing Redis was reported: %v", entries)
	}
}
