package e2e

// Checks on a compose project that catch, without Docker, the classes of
// mistakes that only show on `docker compose up`: an image tag built by
// several services at once, a dependency waiting for a health that is never
// reported, two services on one host port, a collector configured with a
// component its image does not contain. Each check returns the problems it
// found (nil: none); compose_test.go runs them on compose.yaml and on broken
// snippets.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// loadCompose loads a compose file with the compose-spec loader (the one
// docker compose uses), as project name pixelflow.
func loadCompose(t *testing.T, path string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithName("pixelflow"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s does not load: %v", path, err)
	}
	return p
}

// sortedServices lists the project's services by name, so problems come in
// a stable order.
func sortedServices(p *types.Project) []types.ServiceConfig {
	var out []types.ServiceConfig
	for _, s := range p.Services {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// checkBuildsOnce: at most one service builds each image tag (compose
// builds services in parallel and the second export of one tag fails), and
// every other service running a tag built here never pulls it (there is no
// such image in any registry) and depends on its builder (so starting it
// alone still builds the image).
func checkBuildsOnce(p *types.Project) []string {
	builders := map[string][]string{}
	for _, s := range sortedServices(p) {
		if s.Build != nil && s.Image != "" {
			builders[s.Image] = append(builders[s.Image], s.Name)
		}
	}
	var out []string
	for _, img := range slices.Sorted(maps.Keys(builders)) {
		if b := builders[img]; len(b) > 1 {
			out = append(out, fmt.Sprintf("image %s is built by %d services (%s): build it in one, run it in the others", img, len(b), strings.Join(b, ", ")))
		}
	}
	for _, s := range sortedServices(p) {
		b := builders[s.Image]
		if s.Build != nil || len(b) == 0 {
			continue
		}
		if s.PullPolicy != types.PullPolicyNever {
			out = append(out, fmt.Sprintf("%s runs %s, built by %s, with pull_policy %q: want never (no registry has it)", s.Name, s.Image, b[0], s.PullPolicy))
		}
		if _, ok := s.DependsOn[b[0]]; !ok {
			out = append(out, fmt.Sprintf("%s runs %s but does not depend on %s, which builds it", s.Name, s.Image, b[0]))
		}
	}
	return out
}

// checkHealthyDependencies: every depends_on with condition service_healthy
// names a service with a healthcheck compose defines (images' own
// HEALTHCHECKs cannot be seen without Docker, so they do not count).
func checkHealthyDependencies(p *types.Project) []string {
	var out []string
	for _, s := range sortedServices(p) {
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			if s.DependsOn[dep].Condition != types.ServiceConditionHealthy {
				continue
			}
			target, ok := p.Services[dep]
			hc := target.HealthCheck
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s waits for %s to be healthy, and there is no such service", s.Name, dep))
			case hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE":
				out = append(out, fmt.Sprintf("%s waits for %s to be healthy, and %s has no healthcheck: it never will be", s.Name, dep, dep))
			}
		}
	}
	return out
}

// checkPorts: every host port is published once (per protocol), and a
// service with more than one replica publishes none at a fixed host port
// (its replicas would collide on it).
func checkPorts(p *types.Project) []string {
	var out []string
	owner := map[string]string{}
	for _, s := range sortedServices(p) {
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			ports, err := expandPorts(port.Published)
			if err != nil {
				out = append(out, fmt.Sprintf("%s: published port %q: %v", s.Name, port.Published, err))
				continue
			}
			if n := s.GetScale(); n > 1 {
				out = append(out, fmt.Sprintf("%s runs %d replicas and publishes host port %s: they would collide", s.Name, n, port.Published))
			}
			proto := port.Protocol
			if proto == "" {
				proto = "tcp"
			}
			for _, n := range ports {
				key := strconv.Itoa(n) + "/" + proto
				if other, dup := owner[key]; dup {
					out = append(out, fmt.Sprintf("host port %s published by %s and %s", key, other, s.Name))
				}
				owner[key] = s.Name
			}
		}
	}
	return out
}

// expandPorts turns "8080" or "8080-8082" into the ports it names.
func expandPorts(published string) ([]int, error) {
	lo, hi, isRange := strings.Cut(published, "-")
	a, err := strconv.Atoi(lo)
	if err != nil {
		return nil, err
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(hi); err != nil {
			return nil, err
		}
	}
	if b < a {
		return nil, fmt.Errorf("empty range")
	}
	var out []int
	for n := a; n <= b; n++ {
		out = append(out, n)
	}
	return out, nil
}

// collectorComponents is what the OpenTelemetry collector images compose
// may run contain, per image as written in compose.yaml: a small
// allow-list of component types, not the whole distribution. Written down
// from the otelcol-contrib 0.114.0 distribution manifest
// (open-telemetry/opentelemetry-collector-releases,
// distributions/otelcol-contrib/manifest.yaml at v0.114.0). Absent on
// purpose: the `logging` exporter (removed in 0.111.0: use `debug`) and the
// `jaeger` exporter (removed in 0.85.0: Jaeger takes OTLP). Changing the
// image's version in compose.yaml fails TestComposeFile until a list for
// the new version is written here, checked against its manifest.
var collectorComponents = map[string]map[string][]string{
	"otel/opentelemetry-collector-contrib:0.114.0": {
		"receivers":  {"otlp", "prometheus", "hostmetrics", "filelog", "zipkin", "jaeger", "redis", "mongodb", "docker_stats"},
		"processors": {"batch", "memory_limiter", "resource", "attributes", "filter", "transform", "resourcedetection", "tail_sampling", "probabilistic_sampler", "span"},
		"exporters":  {"otlp", "otlphttp", "debug", "prometheus", "prometheusremotewrite", "file", "zipkin"},
		"extensions": {"health_check", "pprof", "zpages"},
		"connectors": {"spanmetrics", "servicegraph", "forward", "count"},
	},
}

// collectorConfig is the part of a collector configuration the check
// reads: the components it declares and what its service uses.
type collectorConfig struct {
	Receivers  map[string]any `yaml:"receivers"`
	Processors map[string]any `yaml:"processors"`
	Exporters  map[string]any `yaml:"exporters"`
	Extensions map[string]any `yaml:"extensions"`
	Connectors map[string]any `yaml:"connectors"`
	Service    struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

// checkCollectors: every service running an OpenTelemetry collector image
// loads its configuration from a file mounted into it (--config), and that
// file declares only component types in the image's allow-list and wires
// only declared components into its pipelines. It returns the
// configuration files it checked, too.
func checkCollectors(p *types.Project, allow map[string]map[string][]string) (problems, checked []string) {
	for _, s := range sortedServices(p) {
		if !strings.HasPrefix(s.Image, "otel/opentelemetry-collector") {
			continue
		}
		kinds, ok := allow[s.Image]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s runs %s, which has no component allow-list: write one from that release's manifest", s.Name, s.Image))
			continue
		}
		path := configFlag(s.Command)
		if path == "" {
			problems = append(problems, fmt.Sprintf("%s: no --config in its command %v", s.Name, s.Command))
			continue
		}
		host := ""
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && v.Target == path {
				host = v.Source
			}
		}
		if host == "" {
			problems = append(problems, fmt.Sprintf("%s: --config %s is not a file mounted from this repository", s.Name, path))
			continue
		}
		checked = append(checked, host)
		b, err := os.ReadFile(host)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.Name, err))
			continue
		}
		var cfg collectorConfig
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %v", s.Name, host, err))
			continue
		}
		declared := map[string]map[string]any{
			"receivers": cfg.Receivers, "processors": cfg.Processors, "exporters": cfg.Exporters,
			"extensions": cfg.Extensions, "connectors": cfg.Connectors,
		}
		for _, kind := range slices.Sorted(maps.Keys(declared)) {
			for _, name := range slices.Sorted(maps.Keys(declared[kind])) {
				typ, _, _ := strings.Cut(name, "/")
				if !slices.Contains(kinds[kind], typ) {
					problems = append(problems, fmt.Sprintf("%s: %s declares %s %q, not in %s (allow-list: %v)", s.Name, filepath.Base(host), kind[:len(kind)-1], typ, s.Image, kinds[kind]))
				}
			}
		}
		use := func(where, kind string, names []string, also string) {
			for _, n := range names {
				_, ok := declared[kind][n]
				if !ok && also != "" {
					_, ok = declared[also][n]
				}
				if !ok {
					problems = append(problems, fmt.Sprintf("%s: %s uses %s %q, which is not declared", s.Name, where, kind[:len(kind)-1], n))
				}
			}
		}
		use("service", "extensions", cfg.Service.Extensions, "")
		for _, name := range slices.Sorted(maps.Keys(cfg.Service.Pipelines)) {
			pl := cfg.Service.Pipelines[name]
			use("pipeline "+name, "receivers", pl.Receivers, "connectors")
			use("pipeline "+name, "processors", pl.Processors, "")
			use("pipeline "+name, "exporters", pl.Exporters, "connectors")
		}
	}
	return problems, checked
}

// configFlag finds the collector's --config value in a command.
func configFlag(cmd []string) string {
	for i, a := range cmd {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
		if a == "--config" && i+1 < len(cmd) {
			return cmd[i+1]
		}
	}
	return ""
}
