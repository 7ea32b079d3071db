package chaos

import (
	"context"
	"fmt"
	"time"

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

// containerFaults are the nemesis's faults only containers take (the
// docker provider): each pixelflow container disconnected from the
// network, and Redis's container frozen. Appended last, so the seeds of
// a process cluster keep their meaning.
func containerFaults(sh cluster.Shape) []Fault {
	var out []Fault
	disconnectOf := func(name string, bends []string) {
		out = append(out, Fault{Name: "disconnect:" + name, Target: name, Bends: bends, MinHold: 500 * time.Millisecond, MaxHold: 5 * time.Second,
			Doc: "docker network disconnect the " + name + " container (Redis, the api, its clients all cut off), connected again when healed",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				p, err := process(d, name)
				if err != nil {
					return nil, err
				}
				return disconnect(ctx, d, p)
			}})
	}
	disconnectOf(sh.API, []string{BendWrites})
	for _, r := range sh.Relays {
		disconnectOf(r, nil)
	}
	for _, g := range sh.Gateways {
		disconnectOf(g, nil)
	}
	out = append(out, Fault{Name: "freeze:redis", Target: "redis", MinHold: 500 * time.Millisecond, MaxHold: 5 * time.Second,
		Doc: "docker pause the Redis container (the cgroup freezer), unpaused when healed",
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			if err := d.Cluster.PauseRedis(); err != nil {
				return nil, err
			}
			return func(context.Context) error { return d.Cluster.ResumeRedis() }, nil
		}})
	return out
}
