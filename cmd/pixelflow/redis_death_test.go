package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// The private redis-server (REDIS_URL unset) writes its AOF under
// DATA_DIR/redis, and the DATA_DIR lock admits one pixelflow at a time.
// These tests run the real binary: a pixelflow killed with SIGKILL must
// leave no redis-server appending to that AOF once the next pixelflow
// holds DATA_DIR and starts its own.

// buildPixelflow compiles the production binary for the process tests.
func buildPixelflow(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := cluster.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// serveProcess is `pixelflow serve` on dataDir with a private Redis.
func serveProcess(t *testing.T, bin, name, dataDir string) *cluster.Process {
	t.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &cluster.Process{Name: name, Bin: bin, Role: "serve", Port: port,
		Env: []string{"DATA_DIR=" + dataDir, "INSTANCE_ID=" + name, "RATE_LIMIT=0"},
		Log: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	return p
}

// redisServersIn lists the live redis-server processes working in dir
// (redis-server changes into its --dir).
func redisServersIn(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "redis-server" {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != dir {
			continue
		}
		if processAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

func placeOne(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/api/pixels", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s", body, resp.Status)
	}
}

// TestKilledServeLeavesNoRedisBehind: `pixelflow serve` on a DATA_DIR is
// killed with SIGKILL and another is started on the same DATA_DIR at once.
// While the second starts, no redis-server of its own may run next to the
// first one's on DATA_DIR/redis (watched every millisecond), and once it
// is ready only its own is left, with the first one's pixel kept.
func TestKilledServeLeavesNoRedisBehind(t *testing.T) {
	bin := buildPixelflow(t)
	dataDir := t.TempDir()
	redisDir := filepath.Join(dataDir, "redis")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	p1 := serveProcess(t, bin, "serve1", dataDir)
	if err := p1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	placeOne(t, p1.URL(), `{"gx":7,"gy":7,"color":"#0A0B0C"}`)
	old := redisServersIn(redisDir)
	if len(old) != 1 {
		t.Fatalf("redis-servers on %s: %v, want one", redisDir, old)
	}

	p1.Kill() // SIGKILL; returns once pixelflow is reaped: DATA_DIR is free
	p2 := serveProcess(t, bin, "serve2", dataDir)
	started := make(chan error, 1)
	go func() { started <- p2.Start(ctx) }()
	var mu sync.Mutex
	var both []string
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if pids := redisServersIn(redisDir); len(pids) > 1 {
				mu.Lock()
				both = append(both, fmt.Sprint(pids))
				mu.Unlock()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	err := <-started
	close(stop)
	<-watched
	if err != nil {
		t.Fatal(err)
	}
	if len(both) > 0 {
		t.Errorf("two redis-servers ran on %s at once (the killed pixelflow's %v and the new one's): %v", redisDir, old, both)
	}
	if processAlive(old[0]) {
		t.Errorf("the killed pixelflow's redis-server (pid %d) still runs", old[0])
	}
	if now := redisServersIn(redisDir); len(now) != 1 || now[0] == old[0] {
		t.Errorf("redis-servers on %s after the restart: %v (the old one was %d)", redisDir, now, old[0])
	}
	resp, err := http.Get(p2.URL() + "/api/canvas")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if !strings.Contains(body.String(), `"gx":7,"gy":7,"color":"#0A0B0C"`) {
		t.Errorf("the pixel placed before the kill is gone: %s", body.String())
	}
}

// TestServeStopsALeftoverRedis: a redis-server still runs on
// DATA_DIR/redis with no pixelflow holding DATA_DIR (its death signal was
// lost or is late), its pid recorded in DATA_DIR/redis/redis-server.pid.
// The pixelflow that takes DATA_DIR must stop it before it starts its own,
// or two servers append to one AOF.
func TestServeStopsALeftoverRedis(t *testing.T) {
	bin := buildPixelflow(t)
	dataDir := t.TempDir()
	redisDir := filepath.Join(dataDir, "redis")
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	stray := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", redisDir,
		"--save", "", "--appendonly", "yes", "--logfile", filepath.Join(redisDir, "stray.log"))
	stray.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan struct{})
	go func() { _ = stray.Wait(); close(strayDone) }()
	t.Cleanup(func() { _ = stray.Process.Kill(); <-strayDone })
	for deadline := time.Now().Add(10 * time.Second); len(redisServersIn(redisDir)) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stray redis-server did not start")
		}
	}
	if err := os.WriteFile(filepath.Join(redisDir, redisproc.PidFile), []byte(strconv.Itoa(stray.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := serveProcess(t, bin, "serve", dataDir)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-strayDone:
	default:
		t.Fatalf("the leftover redis-server (pid %d) still runs on %s next to the new pixelflow's %v", stray.Process.Pid, redisDir, redisServersIn(redisDir))
	}
	if !strings.Contains(p.Tail(200), "stopped a redis-server left behind") {
		t.Errorf("the new pixelflow did not say it stopped the leftover; log:\n%s", p.Tail(40))
	}
	placeOne(t, p.URL(), `{"gx":1,"gy":2,"color":"#030405"}`)
}
