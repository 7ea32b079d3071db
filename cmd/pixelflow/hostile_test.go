package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
)

// httpFrom is an HTTP client whose connections come from a loopback address
// of their own (Linux routes all of 127.0.0.0/8 to lo): one test plays many
// hosts.
func httpFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// postFrom posts a placement and returns the answer's status, headers and
// JSON body (the body is read and closed here).
func postFrom(t *testing.T, hc *http.Client, base, body string, hdr ...string) (answer, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/pixels", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return answer{StatusCode: resp.StatusCode, Header: resp.Header}, out
}

// answer is what the tests look at of a response.
type answer struct {
	StatusCode int
	Header     http.Header
}

// postStatus is post (main_test.go) for its status only.
func postStatus(t *testing.T, base, body string) int {
	t.Helper()
	resp, _ := post(t, base, body)
	_ = resp.Body.Close() // closed by post already; said again for the linter
	return resp.StatusCode
}

// apiAndGateway runs an api process and a gateway proxying /api to it, in
// this process, like the reference topology.
func apiAndGateway(t *testing.T, apiEnv map[string]string) (apiBase, gwBase string) {
	t.Helper()
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "INSTANCE_ID": "api1", "HOST": "127.0.0.1"}
	for k, v := range apiEnv {
		env[k] = v
	}
	a := runMain(t, env, "api")
	g := runMain(t, map[string]string{"PORT": "0", "HOST": "127.0.0.1", "REDIS_URL": a.redisSrv.URL(), "API_URL": "http://" + a.Addr,
		"INSTANCE_ID": "gw1", "CANARY_BOUND": "0"}, "gateway")
	return "http://" + a.Addr, "http://" + g.Addr
}

// One client at its rate limit behind a gateway leaves the gateway's other
// clients alone: the gateway passes each client's address on and the api
// believes it from a trusted proxy.
func TestRateLimitPerClientBehindGateway(t *testing.T) {
	apiBase, gw := apiAndGateway(t, map[string]string{"RATE_LIMIT": "1", "RATE_BURST": "2"})
	a, b := httpFrom("127.0.0.2"), httpFrom("127.0.0.3")
	limited := false
	for i := range 5 {
		resp, _ := postFrom(t, a, gw, fmt.Sprintf(`{"gx":%d,"gy":0,"color":"#000000"}`, i))
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			break
		}
	}
	if !limited {
		t.Fatal("client A was never limited at 1/s burst 2")
	}
	if resp, body := postFrom(t, b, gw, `{"gx":9,"gy":9,"color":"#000000"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("client B behind the same gateway: %d %v, want 201", resp.StatusCode, body)
	}
	_ = apiBase
}

// With TRUSTED_PROXIES naming only the gateway's address, a client's
// forged X-Forwarded-For sent straight to the api is ignored; none trusts
// no header at all.
func TestTrustedProxiesSetting(t *testing.T) {
	_, gw := apiAndGateway(t, map[string]string{"RATE_LIMIT": "1", "RATE_BURST": "1", "TRUSTED_PROXIES": "127.0.0.1/32"})
	apiOnly := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "api2",
		"RATE_LIMIT": "1", "RATE_BURST": "1", "TRUSTED_PROXIES": "127.0.0.1/32"}, "api")
	spoofer := httpFrom("127.0.0.4")
	codes := []int{}
	for i := range 3 {
		resp, _ := postFrom(t, spoofer, "http://"+apiOnly.Addr, `{"gx":1,"gy":1,"color":"#000000"}`, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		codes = append(codes, resp.StatusCode)
	}
	if codes[1] != http.StatusTooManyRequests || codes[2] != http.StatusTooManyRequests {
		t.Errorf("an untrusted client rotating X-Forwarded-For got %v, want 429 after its burst", codes)
	}
	// Through the trusted gateway two clients still have their own buckets.
	for _, ip := range []string{"127.0.0.5", "127.0.0.6"} {
		if resp, _ := postFrom(t, httpFrom(ip), gw, `{"gx":2,"gy":2,"color":"#000000"}`); resp.StatusCode != http.StatusCreated {
			t.Errorf("client %s through the gateway: %d", ip, resp.StatusCode)
		}
	}
	none := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "api3",
		"RATE_LIMIT": "1", "RATE_BURST": "1", "TRUSTED_PROXIES": "none"}, "api")
	c := httpFrom("127.0.0.1")
	postFrom(t, c, "http://"+none.Addr, `{"gx":1,"gy":1,"color":"#000000"}`, "X-Forwarded-For", "198.51.100.1")
	if resp, _ := postFrom(t, c, "http://"+none.Addr, `{"gx":1,"gy":1,"color":"#000000"}`, "X-Forwarded-For", "198.51.100.2"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("TRUSTED_PROXIES=none believed X-Forwarded-For: %d", resp.StatusCode)
	}
}

// An Idempotency-Key belongs to its client: the same key from another
// client neither replays nor conflicts.
func TestIdempotencyKeysPerClientOverHTTP(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0", "INSTANCE_ID": "idem"}, "serve")
	base := "http://" + m.Addr
	a, b := httpFrom("127.0.0.2"), httpFrom("127.0.0.3")
	r1, first := postFrom(t, a, base, `{"gx":1,"gy":1,"color":"#111111"}`, "Idempotency-Key", "order-1")
	r2, other := postFrom(t, b, base, `{"gx":2,"gy":2,"color":"#222222"}`, "Idempotency-Key", "order-1")
	if r1.StatusCode != 201 || r2.StatusCode != 201 || r2.Header.Get("Idempotent-Replayed") != "" || other["id"] == first["id"] {
		t.Fatalf("client B reusing A's key: %d %v (replayed %q), want its own 201", r2.StatusCode, other, r2.Header.Get("Idempotent-Replayed"))
	}
	r3, again := postFrom(t, a, base, `{"gx":1,"gy":1,"color":"#111111"}`, "Idempotency-Key", "order-1")
	if r3.StatusCode != 201 || r3.Header.Get("Idempotent-Replayed") != "true" || again["id"] != first["id"] {
		t.Fatalf("client A's retry: %d %v, want its first answer replayed", r3.StatusCode, again)
	}
}

// IDEMPOTENCY_KEYS bounds the keys a client holds: after 200 keys with a
// bound of 64, at most 64 still answer (a conflict, for another pixel),
// the newest among them.
func TestIdempotencyKeysSettingBoundsAClient(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0", "INSTANCE_ID": "idk", "IDEMPOTENCY_KEYS": "64"}, "serve")
	base, hc := "http://"+m.Addr, httpFrom("127.0.0.7")
	for i := range 200 {
		if resp, _ := postFrom(t, hc, base, fmt.Sprintf(`{"gx":%d,"gy":%d,"color":"#010101"}`, i%64, i/64), "Idempotency-Key", fmt.Sprint("k", i)); resp.StatusCode != 201 {
			t.Fatalf("key %d: %d", i, resp.StatusCode)
		}
	}
	// Newest first: a held key answers 409 and changes nothing; a forgotten
	// one is written again, which can only evict keys already asked.
	held := 0
	for i := 199; i >= 0; i-- {
		resp, _ := postFrom(t, hc, base, `{"gx":63,"gy":63,"color":"#FEFEFE"}`, "Idempotency-Key", fmt.Sprint("k", i))
		if resp.StatusCode == http.StatusConflict {
			held++
		} else if i == 199 {
			t.Fatalf("the newest key was forgotten: %d", resp.StatusCode)
		}
	}
	if held > 64 || held < 16 {
		t.Errorf("a client holds %d of its 200 keys, want at most IDEMPOTENCY_KEYS=64 (and most of them)", held)
	}
}

// A request body trickled a byte a second is cut at HTTP_READ_TIMEOUT, and
// headers trickled at HTTP_READ_HEADER_TIMEOUT.
func TestTrickledRequestsAreCut(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "slow",
		"HTTP_READ_HEADER_TIMEOUT": "500ms", "HTTP_READ_TIMEOUT": "1s"}, "serve")
	cut := func(t *testing.T, head string, trickle string) time.Duration {
		t.Helper()
		nc, err := net.Dial("tcp", m.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		start := time.Now()
		if _, err := io.WriteString(nc, head); err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, nc) // until the server closes
			close(closed)
		}()
		for i := 0; ; i++ {
			select {
			case <-closed:
				return time.Since(start)
			case <-time.After(time.Second):
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("still connected after 10s of trickling")
			}
			_, _ = nc.Write([]byte{trickle[i%len(trickle)]})
		}
	}
	t.Run("body", func(t *testing.T) {
		d := cut(t, "POST /api/pixels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n", `{"gx":1`)
		if d > 3*time.Second {
			t.Errorf("body trickle cut after %s, want about HTTP_READ_TIMEOUT (1s)", d)
		}
	})
	t.Run("headers", func(t *testing.T) {
		d := cut(t, "GET /api/canvas HTTP/1.1\r\n", "X-a: b\r\n")
		if d > 3*time.Second {
			t.Errorf("header trickle cut after %s, want about HTTP_READ_HEADER_TIMEOUT (0.5s)", d)
		}
	})
}

// HTTP_WRITE_TIMEOUT bounds requests, not WebSocket sessions: a client stays
// connected and keeps receiving past it.
func TestWriteTimeoutSparesWebSockets(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0", "INSTANCE_ID": "wst",
		"HTTP_WRITE_TIMEOUT": "300ms", "HTTP_READ_TIMEOUT": "300ms", "HTTP_READ_HEADER_TIMEOUT": "300ms"}, "serve")
	base := "http://" + m.Addr
	c := client.New(client.Options{BaseURL: base, Name: "ws"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Snapshots == 0 {
		if time.Now().After(deadline) {
			t.Fatal("client never connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if code := postStatus(t, base, `{"gx":3,"gy":3,"color":"#123456"}`); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	for c.Canvas()[[2]int{3, 3}].Color.String() != "#123456" {
		if time.Now().After(deadline) {
			t.Fatal("the event never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.Stats(); st.Connects != 1 {
		t.Errorf("the client connected %d times, want once: the session was cut", st.Connects)
	}
}

// DATA_DIR=memory leaves no private Redis directory behind.
func TestMemoryModeCleansItsRedisDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	m := NewMain()
	m.LogOutput = io.Discard
	if err := m.ParseFlags([]string{"serve"}, func(k string) string {
		return map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "tmp"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	during, _ := filepath.Glob(filepath.Join(tmp, "pixelflow-redis-*"))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	after, _ := filepath.Glob(filepath.Join(tmp, "pixelflow-redis-*"))
	if len(during) != 1 || len(after) != 0 {
		t.Fatalf("private redis dirs while running %v, after Close %v; want one, then none", during, after)
	}
}

// Public answers name checks and codes, never errors, addresses or pids.
func TestNoInternalsServed(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "leaky", "CANARY_BOUND": "0"}, "serve")
	base := "http://" + m.Addr
	redisAddr := m.redisSrv.Addr()
	_, redisPort, _ := net.SplitHostPort(redisAddr)
	m.redisSrv.Kill()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	leaks := []string{redisAddr, ":" + redisPort, "127.0.0.1", "dial", "refused", "tcp", fmt.Sprint(os.Getpid())}
	var ready struct {
		Ready  bool
		Checks map[string]string
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		_ = json.Unmarshal([]byte(body), &ready)
		if code == http.StatusServiceUnavailable && ready.Checks["redis"] == "unreachable" {
			for _, l := range leaks {
				if strings.Contains(body, l) {
					t.Errorf("/readyz shows %q: %s", l, body)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never said redis: unreachable: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, path := range []string{"/api/health", "/ops/data"} {
		code, body := get(path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
		for _, l := range leaks {
			if strings.Contains(body, l) {
				t.Errorf("%s shows %q: %s", path, l, body)
			}
		}
	}
	if _, body := get("/ops/data"); !strings.Contains(body, `"redis: unreachable"`) {
		t.Errorf("/ops/data does not say redis: unreachable: %s", body)
	}
}

// With ADMIN_ADDR the operator's endpoints leave the public port for the
// admin listener; without it /debug/pprof needs PPROF=1.
func TestAdminListener(t *testing.T) {
	adminOnly := []string{"/metrics", "/ops", "/ops/data", "/api/health", "/debug/pprof/"}
	status := func(base, path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "adm", "ADMIN_ADDR": "127.0.0.1:0"}, "serve")
	pub, adm := "http://"+m.Addr, "http://"+m.AdminAddr
	for _, p := range adminOnly {
		if c := status(pub, p); c != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", p, c)
		}
		if c := status(adm, p); c != http.StatusOK {
			t.Errorf("admin %s: %d, want 200", p, c)
		}
	}
	for _, p := range []string{"/", "/app.js", "/healthz", "/readyz", "/api/canvas"} {
		if c := status(pub, p); c != http.StatusOK && c != http.StatusServiceUnavailable {
			t.Errorf("public %s: %d", p, c)
		}
	}
	plain := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "pl"}, "serve")
	if c := status("http://"+plain.Addr, "/debug/pprof/"); c != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without PPROF: %d, want 404", c)
	}
	if c := status("http://"+plain.Addr, "/metrics"); c != http.StatusOK {
		t.Errorf("/metrics on the single port: %d", c)
	}
	prof := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "pp", "PPROF": "1"}, "serve")
	if c := status("http://"+prof.Addr, "/debug/pprof/"); c != http.StatusOK {
		t.Errorf("/debug/pprof/ with PPROF=1: %d, want 200", c)
	}
}

// The binary snapshot has an ETag on the stream position: asking again
// with it answers 304 until the canvas moves on.
func TestSnapshotETag(t *testing.T) {
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0", "INSTANCE_ID": "etag", "CANARY_INTERVAL": "0"}, "serve")
	base := "http://" + m.Addr
	// Once the gateway follows the relay's first epoch (readiness alone
	// can come first: the gateway may read the stream before the relay
	// replaced it), nothing moves the position until we write: no
	// canaries.
	if err := waitReady(base); err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, m)
	get := func(inm string) answer {
		a, _ := getCanvas(t, base, "application/octet-stream", inm)
		return a
	}
	first := get("")
	etag := first.Header.Get("ETag")
	if first.StatusCode != 200 || etag == "" {
		t.Fatalf("first GET: %d ETag %q", first.StatusCode, etag)
	}
	if r := get(etag); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: %d, want 304", r.StatusCode)
	}
	if code := postStatus(t, base, `{"gx":1,"gy":1,"color":"#ABCDEF"}`); code != 201 {
		t.Fatal(code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := get(etag)
		if r.StatusCode == http.StatusOK && r.Header.Get("ETag") != etag {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ETag never moved after a write: %d %q", r.StatusCode, r.Header.Get("ETag"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every log line parses as one JSON object with each key once.
func TestLogLinesHaveUniqueKeys(t *testing.T) {
	var buf logbuf.Buffer
	m := NewMain()
	m.LogOutput = &buf
	if err := m.ParseFlags([]string{"serve"}, func(k string) string {
		return map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "logs", "LOG_LEVEL": "debug"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := postStatus(t, "http://"+m.Addr, `{"gx":1,"gy":1,"color":"#ABCDEF"}`); code != 201 {
		t.Fatal(code)
	}
	time.Sleep(500 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	lines := 0
	for sc.Scan() {
		lines++
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("not a JSON object: %s", sc.Text())
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			k := tok.(string)
			if seen[k] {
				t.Errorf("key %q twice in %s", k, sc.Text())
			}
			seen[k] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
		}
	}
	if lines < 3 {
		t.Fatalf("only %d log lines", lines)
	}
}

// getCanvas asks base for the snapshot in the form accept names (""
// for JSON), with If-None-Match inm when it is not "".
func getCanvas(t *testing.T, base, accept, inm string) (answer, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/canvas", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{StatusCode: resp.StatusCode, Header: resp.Header}, body
}

// waitEpoch waits until the gateway of m follows a stream epoch.
func waitEpoch(t *testing.T, m *Main) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); m.gateway.Stats().Epoch == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never learned the stream's epoch")
		}
	}
}

// waitReady waits until base's /readyz answers 200.
func waitReady(base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 10s", base)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A retried Idempotency-Key finds its first answer across a restart that
// changes IDEMPOTENCY_KEYS (8 then 64, 64 then 8), on the file store: the
// retry answers the first pixel replayed and the canvas is unchanged. A
// key's bucket followed the setting below 64, so the retry was written
// again (issue 28 item 2).
func TestIdempotencyKeyOutlivesASettingChange(t *testing.T) {
	for _, c := range [][2]string{{"8", "64"}, {"64", "8"}} {
		t.Run(c[0]+"-then-"+c[1], func(t *testing.T) {
			dir := t.TempDir()
			start := func(keys string) *Main {
				env := map[string]string{"DATA_DIR": dir, "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0", "INSTANCE_ID": "idem-restart", "IDEMPOTENCY_KEYS": keys}
				m := NewMain()
				if err := m.ParseFlags([]string{"serve"}, func(k string) string { return env[k] }); err != nil {
					t.Fatal(err)
				}
				if err := m.Run(context.Background()); err != nil {
					_ = m.Close()
					t.Fatalf("run with IDEMPOTENCY_KEYS=%s: %v", keys, err)
				}
				return m
			}
			// One key from each of 8 clients (loopback addresses of their
			// own): one client's second key could share a group with its
			// first and, at one key per group, evict it.
			const clients = 8
			body := func(i int) string { return fmt.Sprintf(`{"gx":%d,"gy":5,"color":"#0000%02X"}`, i, i+1) }
			from := func(i int) *http.Client { return httpFrom(fmt.Sprintf("127.0.0.%d", 20+i)) }
			m := start(c[0])
			ids := make([]any, clients)
			for i := range clients {
				resp, out := postFrom(t, from(i), "http://"+m.Addr, body(i), "Idempotency-Key", "order-1")
				if resp.StatusCode != http.StatusCreated {
					_ = m.Close()
					t.Fatalf("client %d: %d %v", i, resp.StatusCode, out)
				}
				ids[i] = out["id"]
			}
			before := snapshot(t, "http://"+m.Addr)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			m = start(c[1])
			defer func() {
				if err := m.Close(); err != nil {
					t.Error(err)
				}
			}()
			base := "http://" + m.Addr
			for i := range clients {
				resp, out := postFrom(t, from(i), base, body(i), "Idempotency-Key", "order-1")
				if resp.StatusCode != http.StatusCreated || resp.Header.Get("Idempotent-Replayed") != "true" || out["id"] != ids[i] {
					t.Errorf("client %d's retry after the restart: %d %v (replayed %q), want its first answer %v", i, resp.StatusCode, out, resp.Header.Get("Idempotent-Replayed"), ids[i])
				}
			}
			if after := snapshot(t, base); after != before {
				t.Errorf("the retries changed the canvas:\n%s\n%s", before, after)
			}
		})
	}
}
