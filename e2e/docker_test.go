package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
)

// needDocker skips a test of the docker provider on another provider,
// saying so, unless E2E_DOCKER=1 (make e2e-docker, CI), where running on
// another provider is a failure.
func needDocker(t *testing.T) {
	t.Helper()
	if env.provider == cluster.Docker {
		return
	}
	if os.Getenv("E2E_DOCKER") == "1" {
		t.Fatalf("E2E_DOCKER=1 but the suites run on provider %s (E2E_PROVIDER=docker, make images)", env.provider)
	}
	t.Skipf("docker provider test not run: the suites run on %s (make e2e-docker runs it)", env.provider)
}

// TestDockerProviderRunsContainers: on the docker provider every pixelflow
// process is a container with an address of its own on the cluster's
// network; disconnecting one from that network really partitions it (its
// published port stops answering) and connecting it again heals it; Close
// leaves no container or network of the run; and a run's leftovers whose
// test process died are swept by the next cluster.
func TestDockerProviderRunsContainers(t *testing.T) {
	needDocker(t)
	// A leftover of a crashed test: a network labelled with a dead owner.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	leftover := "pixelflow-e2e-leftover-" + strings.ReplaceAll(t.Name(), "/", "-")
	if out, err := exec.Command("docker", "network", "create", "--label", "org.pixelflow.e2e.run=leftover",
		"--label", "org.pixelflow.e2e.owner="+strconv.Itoa(dead.Process.Pid), leftover).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", leftover).Run() })

	ctx, c := setup(t, cluster.Options{})
	if out, _ := exec.Command("docker", "network", "ls", "-q", "--filter", "name="+leftover).Output(); len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("the leftover network %s of a dead test process was not swept", leftover)
	}
	list, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, ct := range list {
		addrs[ct.Name] = ct.Addr
	}
	seen := map[string]bool{}
	for _, p := range c.Processes() {
		if !p.InContainer() {
			t.Fatalf("%s is not a container on the docker provider", p.Name)
		}
		var addr string
		for name, a := range addrs {
			if strings.HasSuffix(name, "-"+p.Name) {
				addr = a
			}
		}
		if addr == "" || seen[addr] {
			t.Errorf("%s: address %q on the cluster's network; want one of its own (containers %v)", p.Name, addr, addrs)
		}
		seen[addr] = true
	}

	g := c.Gateways[0]
	if err := g.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if ready(g.URL()) {
		t.Errorf("%s answers on its published port while disconnected from its network", g.Name)
	}
	if err := g.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ready(g.URL()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready 30 s after it was connected again:\n%s", g.Name, g.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	label := c.ContainerLabel()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, what := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
		out, err := exec.Command("docker", append(what, "--filter", "label="+label)...).Output()
		if err != nil || len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("docker %s after Close: %q %v; want nothing of the run left", strings.Join(what, " "), out, err)
		}
	}
}

// ready reports whether base answers GET /readyz with 200 within a second.
func ready(base string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
