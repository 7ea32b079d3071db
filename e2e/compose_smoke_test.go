package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// composeImages are what compose.offline.yaml runs (make images builds
// them).
var composeImages = []string{"pixelflow:local", cluster.LocalRedisImage, "pixelflow-toxiproxy:local"}

// TestComposeOffline runs compose.offline.yaml for real: `up --wait`;
// pixels placed through serve reach WebSocket clients of both serve and
// gateway-2 (the history checker judges every one); the Redis container is
// killed and started again under writes and nothing is lost; `down -v`
// leaves no container, network or volume of the project.
//
// It needs Docker, the compose plugin and make images' images. Without
// them it is skipped saying what is missing, unless E2E_COMPOSE=1 (CI),
// where a missing dependency is a failure.
func TestComposeOffline(t *testing.T) {
	if missing := composeMissing(); missing != "" {
		if os.Getenv("E2E_COMPOSE") == "1" {
			t.Fatalf("E2E_COMPOSE=1 but %s", missing)
		}
		t.Skipf("compose smoke not run: %s (make images; E2E_COMPOSE=1 makes this a failure)", missing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ports := map[string]int{}
	for _, k := range []string{"SERVE_PORT", "GATEWAY_PORT", "TOXIPROXY_PORT"} {
		p, err := redisproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[k] = p
	}
	project := fmt.Sprintf("pixelflow-smoke-%d", os.Getpid())
	compose := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "-f", "../compose.offline.yaml", "-p", project}, args...)...)
		cmd.Env = append(os.Environ(), "RATE_LIMIT=0")
		for k, p := range ports {
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", k, p))
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	downed := false
	t.Cleanup(func() {
		if t.Failed() {
			if out, _ := compose("logs", "--no-color", "--tail", "40"); out != "" {
				t.Logf("compose logs:\n%s", out)
			}
		}
		if !downed {
			_, _ = compose("down", "-v", "--remove-orphans", "-t", "1")
		}
	})
	if out, err := compose("up", "-d", "--wait", "--wait-timeout", "120"); err != nil {
		t.Fatalf("compose up --wait: %v\n%s", err, out)
	}
	serve := fmt.Sprintf("http://127.0.0.1:%d", ports["SERVE_PORT"])
	gw := fmt.Sprintf("http://127.0.0.1:%d", ports["GATEWAY_PORT"])
	target := cluster.Target{API: serve, Gateways: []string{serve, gw}, Describe: "compose.offline.yaml (containers)"}

	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, target, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	writer := cluster.NewWriter(serve, rec, 16)
	if acked := writer.Run(ctx, 2, 200); acked != 200 {
		t.Errorf("acknowledged %d of 200 writes before any fault", acked)
	}

	// Redis killed under writes, then started again with its AOF volume:
	// writes keep answering (the outbox holds the backlog) and drain.
	faultCtx, stopWrites := context.WithCancel(ctx)
	during := make(chan int)
	go func() {
		during <- cluster.NewWriter(serve, rec, 16).Run(faultCtx, 2, 1_000_000)
	}()
	time.Sleep(300 * time.Millisecond)
	if out, err := compose("kill", "redis"); err != nil {
		t.Fatalf("compose kill redis: %v\n%s", err, out)
	}
	backlog := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n, err := cluster.Backlog(ctx, serve); err == nil {
			backlog = max(backlog, n)
		}
	}
	if out, err := compose("start", "redis"); err != nil {
		t.Fatalf("compose start redis: %v\n%s", err, out)
	}
	time.Sleep(time.Second)
	stopWrites()
	acked := <-during
	t.Logf("%d writes acknowledged around the Redis kill; the outbox held up to %d while Redis was down", acked, backlog)
	if backlog == 0 {
		t.Error("the outbox never held a backlog while Redis was killed: the fault did not happen")
	}

	rep := cluster.Verify(ctx, t.Name(), target, rec, w, 60*time.Second, t.Logf)
	check(t, rep)
	for i, cl := range w.Clients {
		if cl.Stats().Received == 0 {
			t.Errorf("client %d received nothing", i)
		}
	}

	out, err := compose("down", "-v", "--remove-orphans", "-t", "2")
	downed = true
	if err != nil {
		t.Fatalf("compose down -v: %v\n%s", err, out)
	}
	filter := "label=com.docker.compose.project=" + project
	for _, kind := range [][]string{{"ps", "-a"}, {"network", "ls"}, {"volume", "ls"}} {
		out, err := exec.CommandContext(ctx, "docker", append(kind, "-q", "--filter", filter)...).Output()
		if err != nil {
			t.Errorf("docker %s: %v", strings.Join(kind, " "), err)
		} else if left := strings.Fields(string(out)); len(left) > 0 {
			t.Errorf("compose down -v left %s behind: %v", kind[0], left)
		}
	}
}

// composeMissing says what the compose smoke lacks, or "".
func composeMissing() string {
	if err := exec.Command("docker", "compose", "version").Run(); err != nil {
		return "the docker compose plugin does not run (scripts/ensure-compose.sh builds it)"
	}
	var missing []string
	for _, img := range composeImages {
		if err := exec.Command("docker", "image", "inspect", img).Run(); err != nil {
			missing = append(missing, img)
		}
	}
	if len(missing) > 0 {
		return "images missing: " + strings.Join(missing, ", ")
	}
	return ""
}

// TestImageAloneExplainsRedis: `docker run pixelflow:local` with no
// REDIS_URL cannot start a private redis-server (the image has none); it
// must exit at once with one line saying so, not crash-loop cryptically.
func TestImageAloneExplainsRedis(t *testing.T) {
	if missing := composeMissing(); missing != "" {
		if os.Getenv("E2E_COMPOSE") == "1" {
			t.Fatalf("E2E_COMPOSE=1 but %s", missing)
		}
		t.Skipf("image check not run: %s (make images; E2E_COMPOSE=1 makes this a failure)", missing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "pixelflow:local").CombinedOutput()
	if err == nil {
		t.Fatalf("docker run pixelflow:local without REDIS_URL exited 0:\n%s", out)
	}
	// The structured log records (the build's "starting" line) are for
	// machines; what a person reads is the one plain line.
	var plain []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
	}
	if len(plain) != 1 || !strings.Contains(plain[0], "REDIS_URL is not set") || !strings.Contains(plain[0], "container image has no redis-server") {
		t.Errorf("docker run pixelflow:local without REDIS_URL said %d plain lines, want one naming REDIS_URL and the image:\n%s", len(plain), out)
	}
}
