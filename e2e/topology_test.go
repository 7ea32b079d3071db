package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
)

// TestChooseStore: the store follows E2E_STORE or what the provider has,
// and asking for what it cannot give is an error, never a fallback.
func TestChooseStore(t *testing.T) {
	has := func(string) (string, error) { return "/usr/bin/mongod", nil }
	hasNot := func(string) (string, error) { return "", errors.New("not found") }
	for _, tc := range []struct {
		provider string
		want     cluster.StoreKind
		env      string
		look     func(string) (string, error)
		image    bool // the daemon has the MongoDB image
		store    cluster.StoreKind
		err      string
	}{
		{provider: cluster.Docker, look: hasNot, image: true, store: cluster.StoreMongo},
		{provider: cluster.Docker, look: has, store: cluster.StoreEmbedded},
		{provider: cluster.Docker, env: "mongodb", look: hasNot, store: cluster.StoreMongo},
		{provider: cluster.Docker, env: "embedded", look: has, image: true, store: cluster.StoreEmbedded},
		{provider: cluster.Local, look: hasNot, store: cluster.StoreEmbedded},
		{provider: cluster.Local, look: has, store: cluster.StoreMongo},
		{provider: cluster.Local, env: "embedded", look: has, store: cluster.StoreEmbedded},
		{provider: cluster.Local, env: "mongodb", look: hasNot, err: "needs mongod on PATH"},
		{provider: cluster.Local, want: cluster.StoreEmbedded, env: "mongodb", look: has, store: cluster.StoreEmbedded},
		{provider: cluster.Local, env: "sqlite", look: has, err: "want embedded or mongodb"},
		{provider: "k8s", look: has, err: "unknown provider"},
	} {
		getenv := func(k string) string {
			if k == "E2E_STORE" {
				return tc.env
			}
			return ""
		}
		hasImage := func(_ context.Context, ref string) bool { return tc.image && ref == cluster.MongoImage }
		got, why, err := cluster.ChooseStore(tc.provider, tc.want, getenv, tc.look, hasImage)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s want=%q E2E_STORE=%q: %v, %q; want an error with %q", tc.provider, tc.want, tc.env, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.store || why == ""):
			t.Errorf("%s want=%q E2E_STORE=%q: %q (%s) %v; want %q", tc.provider, tc.want, tc.env, got, why, err, tc.store)
		}
	}
}

// TestTopologyFor: on MongoDB the relays are processes of their own and the
// MongoDB link can be cut; on the embedded store the relay is in the api
// process and only Redis has a link.
func TestTopologyFor(t *testing.T) {
	m := cluster.TopologyFor(cluster.StoreMongo)
	if m.RelayInAPI || !m.CanPartition(cluster.LinkMongo) || !m.CanPartition(cluster.LinkRedis) || !m.DatabaseReadable {
		t.Errorf("MongoDB topology: %+v", m)
	}
	e := cluster.TopologyFor(cluster.StoreEmbedded)
	if !e.RelayInAPI || e.CanPartition(cluster.LinkMongo) || !e.CanPartition(cluster.LinkRedis) || e.DatabaseReadable {
		t.Errorf("embedded topology: %+v", e)
	}
	// RelayHosts follows the topology, not the provider.
	api, r1, r2 := &cluster.Process{Name: "api"}, &cluster.Process{Name: "relay-1"}, &cluster.Process{Name: "relay-2"}
	c := &cluster.Cluster{API: api, Relays: []*cluster.Process{r1, r2}, Topology: m}
	if h := c.RelayHosts(); len(h) != 2 || h[0] != r1 || h[1] != r2 {
		t.Errorf("MongoDB relay hosts: %v", h)
	}
	c = &cluster.Cluster{API: api, Topology: e}
	if h := c.RelayHosts(); len(h) != 1 || h[0] != api {
		t.Errorf("embedded relay hosts: %v", h)
	}
}

// TestChooseProvider: E2E_PROVIDER wins; unset, docker only when the daemon
// answers and has every image the provider runs (a machine without a
// registry cannot pull them), else local with the missing images named.
func TestChooseProvider(t *testing.T) {
	down := cluster.DockerState{Reason: "no socket"}
	bare := cluster.DockerState{Healthy: true, Missing: []string{cluster.RedisImage + " or " + cluster.LocalRedisImage, cluster.BaseImage + " or " + cluster.DistrolessImage}}
	ready := cluster.DockerState{Healthy: true}
	for _, tc := range []struct {
		env      string
		docker   cluster.DockerState
		provider string
		why, err string
	}{
		{docker: down, provider: cluster.Local, why: "no healthy Docker (no socket)"},
		{docker: bare, provider: cluster.Local, why: "make images"},
		{docker: bare, provider: cluster.Local, why: cluster.RedisImage},
		{docker: ready, provider: cluster.Docker, why: "has the images"},
		{env: "local", docker: ready, provider: cluster.Local, why: "E2E_PROVIDER=local"},
		{env: "docker", docker: bare, provider: cluster.Docker, why: "E2E_PROVIDER=docker"},
		{env: "docker", docker: down, err: "Docker is not usable: no socket"},
		{env: "k8s", docker: ready, err: `want docker or local`},
	} {
		getenv := func(k string) string {
			if k == "E2E_PROVIDER" {
				return tc.env
			}
			return ""
		}
		probe := func(context.Context) cluster.DockerState { return tc.docker }
		got, why, err := cluster.ChooseProvider(context.Background(), getenv, probe)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("E2E_PROVIDER=%q %+v: %q, %v; want an error with %q", tc.env, tc.docker, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.provider || !strings.Contains(why, tc.why)):
			t.Errorf("E2E_PROVIDER=%q %+v: %q (%s) %v; want %q with %q", tc.env, tc.docker, got, why, err, tc.provider, tc.why)
		}
	}
}
