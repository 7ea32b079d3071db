package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/procstat"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// serveDeployment is the "serve" topology, the one the side-by-side harness
// (../shared/peer) runs: one `pixelflow serve` process (api, relay and
// gateway; embedded store in memory) and a redis-server of its own without
// persistence, both children of the load test. With Params.RedisReplicas
// the redis-server has replicas (children too), so the cost of
// REDIS_WAIT_REPLICAS can be measured.
type serveDeployment struct {
	redis    *redisproc.Server
	replicas []*redisproc.Server
	cmd      *exec.Cmd
	done     chan struct{}
	url      string
	log      *os.File
}

// startServe builds pixelflow into dir and starts the deployment; with cpus
// set, both processes run pinned to those CPUs (taskset).
func startServe(ctx context.Context, dir string, p Params) (*serveDeployment, error) {
	bin, err := cluster.Build(ctx, dir)
	if err != nil {
		return nil, err
	}
	rs, err := redisproc.Start(ctx, redisproc.Options{Dir: filepath.Join(dir, "redis")})
	if err != nil {
		return nil, err
	}
	d := &serveDeployment{redis: rs, done: make(chan struct{})}
	for i := range p.RedisReplicas {
		r, err := redisproc.Start(ctx, redisproc.Options{Dir: filepath.Join(dir, fmt.Sprintf("redis-replica-%d", i+1)),
			Args: rs.ReplicaArgs()})
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("start redis replica %d: %w", i+1, err)
		}
		d.replicas = append(d.replicas, r)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = redistopo.WaitReplicasOnline(wctx, rs, p.RedisReplicas)
	cancel()
	if err != nil {
		d.stop()
		return nil, err
	}
	if p.CPUsServer != "" {
		for _, pid := range d.redisPids() {
			if err := pinPID(pid, p.CPUsServer); err != nil {
				d.stop()
				return nil, err
			}
		}
	}
	port, err := redisproc.FreePort()
	if err != nil {
		d.stop()
		return nil, err
	}
	d.url = "http://127.0.0.1:" + strconv.Itoa(port)
	side := strconv.Itoa(p.Canvas)
	args := []string{bin, "serve"}
	if p.CPUsServer != "" {
		tp, err := exec.LookPath("taskset")
		if err != nil {
			d.stop()
			return nil, errTaskset
		}
		args = append([]string{tp, "-c", p.CPUsServer}, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Env = append(os.Environ(), "HOST=127.0.0.1", "PORT="+strconv.Itoa(port), "REDIS_URL="+rs.URL(),
		"DATA_DIR=memory", "CANVAS_WIDTH="+side, "CANVAS_HEIGHT="+side, "RATE_LIMIT=0",
		"LOG_LEVEL=warn", "INSTANCE_ID=loadtest", "MAX_CONNS=100000", "MAX_CONNS_PER_IP=100000",
		"REDIS_WAIT_REPLICAS="+strconv.Itoa(p.WaitReplicas))
	if d.log, err = os.Create(filepath.Join(dir, "serve.log")); err != nil {
		d.stop()
		return nil, err
	}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		d.stop()
		return nil, err
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	if err := d.waitReady(ctx, 30*time.Second); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// redisPids are the primary's and the replicas' pids.
func (d *serveDeployment) redisPids() []int {
	pids := []int{d.redis.Pid()}
	for _, r := range d.replicas {
		pids = append(pids, r.Pid())
	}
	return pids
}

func (d *serveDeployment) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return errors.New("pixelflow serve exited: see serve.log")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pixelflow serve not ready within %s: %s", timeout, last)
}

func (d *serveDeployment) target(p Params) cluster.Target {
	what := "pixelflow serve (embedded store in memory) and its own redis-server, as the side-by-side harness runs it"
	if p.RedisReplicas > 0 {
		what += fmt.Sprintf("; the redis-server has %d replica(s), REDIS_WAIT_REPLICAS=%d", p.RedisReplicas, p.WaitReplicas)
	}
	return cluster.Target{API: d.url, Gateways: []string{d.url}, Describe: what}
}

// groups are the deployment's processes for the CPU report.
func (d *serveDeployment) groups() []procstat.Group {
	return []procstat.Group{
		{Name: "pixelflow serve", Pids: func() []int { return d.serverPids() }},
		{Name: "redis-server", Pids: d.redisPids}, // the primary and its replicas
	}
}

// serverPids is the serve process: the child itself, or the process
// taskset turned into (taskset execs the command, keeping the pid).
func (d *serveDeployment) serverPids() []int {
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	return []int{d.cmd.Process.Pid}
}

// stop ends both children by their own pids.
func (d *serveDeployment) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	if d.log != nil {
		d.log.Close()
	}
	if d.redis != nil {
		d.redis.Kill()
	}
	for _, r := range d.replicas {
		r.Kill()
	}
}

// launchCluster starts the "cluster" topology: an api and p.Gateways
// gateways on an e2e provider.
func launchCluster(ctx context.Context, dir string, p Params, out io.Writer) (*cluster.Cluster, error) {
	bin, provider, err := cluster.Prepare(ctx, dir)
	if err != nil {
		return nil, err
	}
	side := strconv.Itoa(p.Canvas)
	c, err := cluster.Launch(ctx, dir, cluster.Options{Provider: provider, Bin: bin, Gateways: p.Gateways,
		Env: []string{"CANVAS_WIDTH=" + side, "CANVAS_HEIGHT=" + side, "LOG_LEVEL=warn", "MAX_CONNS=100000", "MAX_CONNS_PER_IP=100000"}})
	if err != nil && c != nil {
		fmt.Fprint(out, c.Logs(20))
	}
	return c, err
}

// clusterGroups are a local cluster's processes for the CPU report (the
// api, the gateways, the redis-server this process started), pinned to
// cpus when set. On the docker provider the processes are not this host's
// to read: none are listed, and pinning is refused.
func clusterGroups(c *cluster.Cluster, cpus string) ([]procstat.Group, error) {
	if c.Provider != cluster.Local {
		if cpus != "" {
			return nil, fmt.Errorf("-cpus-server needs the local provider (E2E_PROVIDER=local), not %s", c.Provider)
		}
		return nil, nil
	}
	groups := []procstat.Group{
		{Name: "pixelflow api", Pids: func() []int { return []int{c.API.Pid()} }},
		{Name: "pixelflow gateways", Pids: func() []int {
			var pids []int
			for _, g := range c.Gateways {
				pids = append(pids, g.Pid())
			}
			return pids
		}},
		{Name: "redis-server", Pids: func() []int { return procstat.ChildrenNamed("redis-server", os.Getpid()) }},
	}
	if cpus != "" {
		for _, g := range groups {
			for _, pid := range g.Pids() {
				if err := pinPID(pid, cpus); err != nil {
					return nil, err
				}
			}
		}
	}
	return groups, nil
}
