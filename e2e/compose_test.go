package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile loads compose.yaml with the compose-spec loader (the one
// docker compose uses) and checks the deployment it describes, so a broken
// file fails on machines without Docker too.
func TestComposeFile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"../compose.yaml"}, cli.WithName("pixelflow"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
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
	roles := map[string]string{"api": "api", "relay": "relay", "gateway-1": "gateway", "gateway-2": "gateway"}
	for name, role := range roles {
		s := svc(name)
		if s.Build == nil || !slices.Equal([]string(s.Command), []string{role}) {
			t.Errorf("%s: build %v command %v, want the local image running %q", name, s.Build, s.Command, role)
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
			if other, dup := published[port.Published]; dup {
				t.Errorf("host port %s published by %s and %s", port.Published, other, name)
			}
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
