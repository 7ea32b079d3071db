package chaos

import (
	"context"
	"fmt"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
)

// containerScenarios are the faults only a container can take: a real
// partition of one pixelflow process from the network (Redis, the api,
// the other processes and its own clients at once). They run on the docker
// provider (E2E_PROVIDER=docker), which runs pixelflow processes as
// containers; elsewhere they are reported as not run, and the docker
// provider's CI run (make chaos-docker) requires them to run.
func containerScenarios() []Scenario {
	noContainers := func(c *cluster.Cluster) string { return c.CannotInject("container-disconnect") }
	return []Scenario{
		{
			Name: "container-disconnect-gateway",
			Doc: "docker network disconnect one of two gateway containers, then connect it again: it loses Redis and its clients at once (a real partition, not a proxy). " +
				"Its clients reconnect to the other or to it when it is back and resume or resync; writes keep returning 201; nothing lost, clients converge.",
			Skip: noContainers,
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				return disconnect(ctx, d, d.Cluster.Gateways[0])
			},
		},
		{
			Name: "container-disconnect-api",
			Doc: "docker network disconnect the api container (with the embedded store: the process that owns the store and runs the relay), then connect it again: " +
				"writes fail while it is cut off, the relay loses Redis; acknowledged writes are all delivered once it is back.",
			Skip:          noContainers,
			WritesMayFail: true,
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				return disconnect(ctx, d, d.Cluster.API)
			},
		},
	}
}

// disconnect cuts p's container off its network and returns what connects
// it again.
func disconnect(ctx context.Context, d *Drill, p *cluster.Process) (func(context.Context) error, error) {
	if err := p.Disconnect(ctx); err != nil {
		return nil, fmt.Errorf("container fault: %w", err)
	}
	d.Logf("%s: container disconnected from its network", p.Name)
	return func(ctx context.Context) error { return p.Reconnect(ctx) }, nil
}
