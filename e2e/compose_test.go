package e2e

import (
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// TestComposeFile loads compose.yaml with the compose-spec loader (the one
// docker compose uses) and checks the deployment it describes, so a broken
// file fails on machines without Docker too.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t, "../compose.yaml")
	for name, check := range map[string]func(*types.Project) []string{
		"builds once": checkBuildsOnce, "healthy dependencies": checkHealthyDependencies, "ports": checkPorts,
	} {
		for _, problem := range check(p) {
			t.Errorf("%s: %s", name, problem)
		}
	}
	problems, checked := checkCollectors(p, collectorComponents)
	for _, problem := range problems {
		t.Errorf("collector: %s", problem)
	}
	if abs, _ := filepath.Abs("../otel/collector.yaml"); !slices.Contains(checked, abs) {
		t.Errorf("otel/collector.yaml is not the config of any collector service (checked %v)", checked)
	}
	svc := func(name string) types.ServiceConfig {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		return s
	}
	for _, name := range []string{"mongo", "redis", "api", "relay", "gateway-1", "gateway-2"} {
		if s := svc(name); s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	for _, name := range []string{"toxiproxy", "otel-collector", "jaeger", "prometheus"} {
		svc(name)
	}
	if s := svc("mongo"); !slices.Contains(s.Command, "--replSet") || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "rs.initiate") {
		t.Errorf("mongo is not a replica set initiated by its healthcheck: %v", s.Command)
	}
	if s := svc("redis"); !strings.Contains(strings.Join(s.Command, " "), "--appendonly yes") {
		t.Errorf("redis runs without AOF: %v", s.Command)
	}
	if s := svc("relay"); s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2 {
		t.Errorf("relay should run 2 replicas (one standby)")
	}
	if s := svc("api"); s.Build == nil || s.Image != "pixelflow:local" {
		t.Errorf("api should build pixelflow:local (the one service that does): build %v image %q", s.Build, s.Image)
	}
	roles := map[string]string{"api": "api", "relay": "relay", "gateway-1": "gateway", "gateway-2": "gateway"}
	for name, role := range roles {
		s := svc(name)
		if s.Image != "pixelflow:local" || !slices.Equal([]string(s.Command), []string{role}) {
			t.Errorf("%s: image %q command %v, want the local image running %q", name, s.Image, s.Command, role)
		}
		for _, dep := range []string{"mongo", "redis"} {
			if d, ok := s.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s must wait for %s to be healthy", name, dep)
			}
		}
		env := s.Environment
		if v := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; v == nil || !strings.Contains(*v, "otel-collector:") {
			t.Errorf("%s does not send traces to the collector", name)
		}
		for _, k := range []string{"MONGO_URI", "REDIS_URL"} {
			if v := env[k]; v == nil || !strings.Contains(*v, "toxiproxy:") {
				t.Errorf("%s: %s should go through toxiproxy, is %v", name, k, v)
			}
		}
	}
	for _, name := range []string{"gateway-1", "gateway-2"} {
		s := svc(name)
		if d, ok := s.DependsOn["api"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s must wait for a healthy api", name)
		}
		if v := s.Environment["INSTANCE_ID"]; v == nil || *v != name {
			t.Errorf("%s: INSTANCE_ID %v, want its own (its own consumer group)", name, v)
		}
	}
	published := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			published[port.Published] = name
		}
	}
	for port, want := range map[string]string{"8080": "gateway-1", "8082": "gateway-2", "8081": "api", "16686": "jaeger", "9090": "prometheus"} {
		if published[port] != want {
			t.Errorf("host port %s is %q, want %s", port, published[port], want)
		}
	}
	if _, ok := p.Configs["toxiproxy"]; !ok {
		t.Error("toxiproxy config missing")
	}
}

// The Prometheus config scrapes every pixelflow service on its port.
func TestPrometheusScrapesEveryRole(t *testing.T) {
	b, err := os.ReadFile("../otel/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api", "relay", "gateway-1", "gateway-2", "port: 8080"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("otel/prometheus.yml does not mention %q", want)
		}
	}
}

// brokenCompose writes a compose file (and the files it names) into a
// temporary directory and loads it.
func brokenCompose(t *testing.T, compose string, files map[string]string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(path, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	return loadCompose(t, path)
}

// wantProblem fails unless one of problems contains want.
func wantProblem(t *testing.T, problems []string, want string) {
	t.Helper()
	for _, p := range problems {
		if strings.Contains(p, want) {
			t.Logf("caught: %s", p)
			return
		}
	}
	t.Errorf("no problem mentions %q: %q", want, problems)
}

// Each compose check fails on a snippet with the mistake it is for.
func TestComposeChecksCatchMistakes(t *testing.T) {
	t.Run("two services build one tag", func(t *testing.T) {
		p := brokenCompose(t, `
services:
  api: {build: ., image: "app:local", command: [api]}
  relay: {build: ., image: "app:local", command: [relay]}
`, map[string]string{"Dockerfile": "FROM scratch\n"})
		wantProblem(t, checkBuildsOnce(p), "image app:local is built by 2 services (api, relay)")
	})
	t.Run("a service of a locally built tag would pull it", func(t *testing.T) {
		p := brokenCompose(t, `
services:
  api: {build: ., image: "app:local"}
  relay: {image: "app:local", depends_on: [api]}
`, map[string]string{"Dockerfile": "FROM scratch\n"})
		wantProblem(t, checkBuildsOnce(p), `relay runs app:local, built by api, with pull_policy ""`)
	})
	t.Run("a service of a locally built tag does not depend on its builder", func(t *testing.T) {
		p := brokenCompose(t, `
services:
  api: {build: ., image: "app:local"}
  relay: {image: "app:local", pull_policy: never}
`, map[string]string{"Dockerfile": "FROM scratch\n"})
		wantProblem(t, checkBuildsOnce(p), "relay runs app:local but does not depend on api")
	})
	t.Run("waits for health that is never reported", func(t *testing.T) {
		p := brokenCompose(t, `
services:
  db: {image: "redis:7.2"}
  off: {image: "redis:7.2", healthcheck: {disable: true}}
  app:
    image: "redis:7.2"
    depends_on:
      db: {condition: service_healthy}
      off: {condition: service_healthy}
`, nil)
		problems := checkHealthyDependencies(p)
		wantProblem(t, problems, "app waits for db to be healthy, and db has no healthcheck")
		wantProblem(t, problems, "app waits for off to be healthy, and off has no healthcheck")
	})
	t.Run("one host port twice", func(t *testing.T) {
		p := brokenCompose(t, `
services:
  a: {image: "redis:7.2", ports: ["8080:8080"]}
  b: {image: "redis:7.2", ports: ["8079-8081:9000-9002"]}
  c: {image: "redis:7.2", ports: ["8080:8080/udp"]}
`, nil)
		problems := checkPorts(p)
		wantProblem(t, problems, "host port 8080/tcp published by a and b")
		if len(problems) != 1 {
			t.Errorf("want exactly the tcp clash (udp 8080 is another port): %q", problems)
		}
	})
	t.Run("replicas on a fixed host port", func(t *testing.T) {
		p := brokenCompose(t, `
services:
  relay: {image: "redis:7.2", ports: ["9000:9000"], deploy: {replicas: 2}}
`, nil)
		wantProblem(t, checkPorts(p), "relay runs 2 replicas and publishes host port 9000")
	})
	const collector = `
services:
  otel:
    image: otel/opentelemetry-collector-contrib:0.114.0
    command: ["--config", "/etc/otelcol/config.yaml"]
    volumes: ["./collector.yaml:/etc/otelcol/config.yaml:ro"]
`
	t.Run("collector component missing from its image", func(t *testing.T) {
		p := brokenCompose(t, collector, map[string]string{"collector.yaml": `
receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {logging: {}, jaeger: {endpoint: "jaeger:14250"}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [logging, jaeger]}}}
`})
		problems, _ := checkCollectors(p, collectorComponents)
		wantProblem(t, problems, `declares exporter "logging", not in otel/opentelemetry-collector-contrib:0.114.0`)
		wantProblem(t, problems, `declares exporter "jaeger"`)
	})
	t.Run("collector pipeline uses an undeclared component", func(t *testing.T) {
		p := brokenCompose(t, collector, map[string]string{"collector.yaml": `
receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {otlp/jaeger: {endpoint: "jaeger:4317"}}
service: {extensions: [health_check], pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [otlp/jaeger]}}}
`})
		problems, _ := checkCollectors(p, collectorComponents)
		wantProblem(t, problems, `pipeline traces uses processor "batch", which is not declared`)
		wantProblem(t, problems, `service uses extension "health_check", which is not declared`)
	})
	t.Run("collector image without an allow-list", func(t *testing.T) {
		p := brokenCompose(t, strings.Replace(collector, "0.114.0", "0.200.0", 1), map[string]string{"collector.yaml": "receivers: {}\n"})
		problems, _ := checkCollectors(p, collectorComponents)
		wantProblem(t, problems, "otel/opentelemetry-collector-contrib:0.200.0, which has no component allow-list")
	})
}

// The builder image is the exact Go release go.mod names: the golang image
// sets GOTOOLCHAIN=local, so an older patch release of the same minor
// refuses the module ("go.mod requires go >= …") instead of downloading a
// toolchain, and a floating tag (golang:1.26) depends on what the host has
// cached.
func TestDockerfileBuilderMatchesGoMod(t *testing.T) {
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range checkBuilderImage(string(gomod), string(dockerfile)) {
		t.Error(problem)
	}
	// The check catches a floating tag, another patch release, and a
	// toolchain left to the image's defaults.
	const mod = "module m\n\ngo 1.26.8\n"
	for broken, want := range map[string]string{
		"FROM golang:1.26-bookworm AS build\nENV GOTOOLCHAIN=local\n":   "golang:1.26-bookworm",
		"FROM golang:1.26.7-bookworm AS build\nENV GOTOOLCHAIN=local\n": "golang:1.26.7-bookworm",
		"FROM golang:1.26.8-bookworm AS build\n":                        "GOTOOLCHAIN=local",
		"FROM debian:bookworm AS build\n":                               "no golang builder stage",
	} {
		wantProblem(t, checkBuilderImage(mod, broken), want)
	}
	for _, ok := range []string{
		"FROM golang:1.26.8-bookworm AS build\nENV GOTOOLCHAIN=local\n",
		"ARG GO_IMAGE=golang:1.26.8-bookworm\nFROM ${GO_IMAGE} AS build\nENV GOTOOLCHAIN=local\n",
	} {
		if p := checkBuilderImage(mod, ok); len(p) != 0 {
			t.Errorf("a matching Dockerfile has problems: %q", p)
		}
	}
	wantProblem(t, checkBuilderImage(mod, "ARG GO_IMAGE=golang:1.26.7-bookworm\nFROM ${GO_IMAGE} AS build\nENV GOTOOLCHAIN=local\n"), "golang:1.26.7-bookworm")
}

var (
	goLine      = regexp.MustCompile(`(?m)^go (\S+)$`)
	golangImage = regexp.MustCompile(`(?m)^(?:FROM |ARG GO_IMAGE=)golang:(\S+?)(-\S+)?(?: AS \S+)?$`)
)

// checkBuilderImage compares the Dockerfile's golang builder stage with
// go.mod's go line and wants GOTOOLCHAIN=local said in the Dockerfile.
func checkBuilderImage(gomod, dockerfile string) []string {
	want := goLine.FindStringSubmatch(gomod)
	if want == nil {
		return []string{"go.mod has no go line"}
	}
	m := golangImage.FindStringSubmatch(dockerfile)
	if m == nil {
		return []string{"the Dockerfile has no golang builder stage (FROM golang:<version>-<os> AS <name>, or ARG GO_IMAGE=golang:<version>-<os>)"}
	}
	var out []string
	if m[1] != want[1] {
		out = append(out, "the Dockerfile builds with golang:"+m[1]+m[2]+", go.mod says go "+want[1]+": pin golang:"+want[1]+m[2])
	}
	if !regexp.MustCompile(`(?m)^ENV GOTOOLCHAIN=local$`).MatchString(dockerfile) {
		out = append(out, "the Dockerfile does not say ENV GOTOOLCHAIN=local: the build must use the image's Go, never download another")
	}
	return out
}

// The workflow is the proof on a real host: it runs the suites and every
// drill on the docker provider, requires the two drills only docker can
// run, uploads both reports on every run, and installs no snap-shimmed
// browser.
func TestWorkflowRunsTheDockerProof(t *testing.T) {
	b, err := os.ReadFile("../.github/workflows/e2e.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Env   map[string]string `yaml:"env"`
			Steps []struct {
				Name string            `yaml:"name"`
				If   string            `yaml:"if"`
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	job, ok := wf.Jobs["e2e"]
	if !ok {
		t.Fatal("no e2e job")
	}
	if job.Env["E2E_PROVIDER"] != cluster.Docker {
		t.Errorf("E2E_PROVIDER=%q for the job, want docker (a missing Docker must fail, not fall back)", job.Env["E2E_PROVIDER"])
	}
	if job.Env["E2E_STORE"] != string(cluster.StoreMongo) {
		t.Errorf("E2E_STORE=%q for the job, want mongodb (without it a daemon that has not pulled mongo:7.0 yet runs the embedded store)", job.Env["E2E_STORE"])
	}
	runs := ""
	uploads := map[string]string{}
	for _, s := range job.Steps {
		runs += s.Run + "\n"
		if strings.HasPrefix(s.Uses, "actions/upload-artifact@") {
			uploads[s.With["path"]] = s.If
		}
	}
	for _, want := range []string{"make test", "make e2e", "make chaos", "mongo-partition", "relay-kill", "apt-get install -y redis-server"} {
		if !strings.Contains(runs, want) {
			t.Errorf("the workflow does not run %q", want)
		}
	}
	if strings.Contains(runs, "chromium-browser") {
		t.Error("the workflow installs chromium-browser: on Ubuntu 24.04 a snap shim; the runner has /usr/bin/chromium")
	}
	for _, path := range []string{"e2e/out", "chaos/out"} {
		if cond, ok := uploads[path]; !ok || cond != "always()" {
			t.Errorf("%s is not uploaded on every run (if: always()): uploaded=%v if=%q", path, ok, cond)
		}
	}
}

// TestImagesScriptBuildsWhatTheHarnessRuns: the names scripts/images.sh
// builds are the ones the harness and compose.yaml run, and none is a
// registry's tag (redis:7.2 stays the registry's image for whoever pulls).
func TestImagesScriptBuildsWhatTheHarnessRuns(t *testing.T) {
	out, err := exec.Command("../scripts/images.sh", "--list").Output()
	if err != nil {
		t.Fatalf("scripts/images.sh --list: %v", err)
	}
	names := strings.Fields(string(out))
	for _, want := range []string{cluster.LocalRedisImage, cluster.BaseImage, "pixelflow:local", "pixelflow:failpoints"} {
		if !slices.Contains(names, want) {
			t.Errorf("scripts/images.sh builds %v, not %s", names, want)
		}
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "pixelflow") || !strings.HasSuffix(n, ":local") && n != "pixelflow:failpoints" {
			t.Errorf("%s: a local image must be named pixelflow…:local (never a registry's tag)", n)
		}
	}
}
