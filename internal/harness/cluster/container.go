package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Runtime images the docker provider runs pixelflow containers on: make
// images' BaseImage, or the registry's distroless image it stands in for
// (the Dockerfile's runtime, pulled where a registry is). The suite's own
// static binary is mounted into it, so a container runs exactly the tree
// under test, never an image built from an older one.
const (
	BaseImage       = "pixelflow-base:local"
	DistrolessImage = "gcr.io/distroless/static-debian12:nonroot"
)

// baseImage is BaseImage when the daemon has it, else DistrolessImage.
func baseImage(ctx context.Context) string {
	if HasImage(ctx, BaseImage) {
		return BaseImage
	}
	return DistrolessImage
}

// Labels on everything the docker provider creates: cleanup finds a run's
// containers and network by them, and a later run removes what a crashed
// test left (its owner pid is gone). Ryuk, testcontainers' reaper, cannot
// run without a registry, so this is the reaper.
const (
	labelRun   = "org.pixelflow.e2e.run"
	labelOwner = "org.pixelflow.e2e.owner"
)

// containers runs one cluster's pixelflow processes as Docker containers,
// each with its own address on a network of its own, so a drill can
// freeze one (docker pause), kill it, or disconnect it from the network: a
// real partition from Redis, the api and its clients at once.
type containers struct {
	run     string // the run's id, in every name and label
	network string
	// gateway is the network's address on the host: the in-process
	// toxiproxy listens there, so containers and the test reach it alike.
	gateway string
	bin     string // the suite's static binary, mounted at /pixelflow
	dir     string // the cluster's files, mounted at the same path
	image   string // the runtime image (baseImage)
}

// newContainers sweeps what crashed runs left, then creates this run's
// network.
func newContainers(ctx context.Context, bin, dir string) (*containers, error) {
	if err := sweepLeftovers(ctx); err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	cs := &containers{run: hex.EncodeToString(id), bin: bin, dir: dir, image: baseImage(ctx)}
	cs.network = "pixelflow-e2e-" + cs.run
	if _, err := docker(ctx, "network", "create", "--label", labelRun+"="+cs.run, "--label", labelOwner+"="+strconv.Itoa(os.Getpid()), cs.network); err != nil {
		return nil, err
	}
	gw, err := docker(ctx, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", cs.network)
	if err != nil || gw == "" {
		_ = cs.close(ctx)
		return nil, fmt.Errorf("docker network %s has no gateway address (%q): %v", cs.network, gw, err)
	}
	cs.gateway = gw
	return cs, nil
}

// labels are the docker run arguments that mark a container as this run's.
func (cs *containers) labels() []string {
	return []string{"--label", labelRun + "=" + cs.run, "--label", labelOwner + "=" + strconv.Itoa(os.Getpid())}
}

// labelMap is labels as testcontainers takes them (its Redis and MongoDB).
func (cs *containers) labelMap() map[string]string {
	return map[string]string{labelRun: cs.run, labelOwner: strconv.Itoa(os.Getpid())}
}

// name is the container name of process name in this run.
func (cs *containers) name(process string) string { return "pixelflow-e2e-" + cs.run + "-" + process }

// runArgs is the docker command line that runs p in the foreground: its
// output is the process's log, and the command ends when the container
// does (--rm removes it then).
func (cs *containers) runArgs(p *Process, env []string) []string {
	port := strconv.Itoa(p.Port)
	args := []string{"run", "--rm", "--name", cs.name(p.Name), "--hostname", p.Name,
		"--network", cs.network, "--network-alias", p.Name,
		// Root, as the test is: the mounted store file and failpoint
		// files are the test's.
		"--user", "0:0",
		// docker-init as PID 1: the kernel ignores a signal a namespace's
		// PID 1 sends itself without a handler, so a crash failpoint's
		// SIGKILL would not kill pixelflow there.
		"--init",
		"-p", "127.0.0.1:" + port + ":" + port,
		"-v", cs.bin + ":/pixelflow:ro", "-v", cs.dir + ":" + cs.dir,
		"--entrypoint", "/pixelflow"}
	args = append(args, cs.labels()...)
	for _, kv := range env {
		args = append(args, "-e", kv)
	}
	return append(args, cs.image, p.Role)
}

// close removes every container and the network of this run.
func (cs *containers) close(ctx context.Context) error {
	return removeLabelled(ctx, labelRun+"="+cs.run)
}

// sweepLeftovers removes the containers and networks of runs whose test
// process is gone (a crashed or killed test), and leaves live runs alone.
func sweepLeftovers(ctx context.Context) error {
	out, err := docker(ctx, "ps", "-a", "--filter", "label="+labelOwner, "--format", `{{.Label "`+labelOwner+`"}} {{.Label "`+labelRun+`"}}`)
	if err != nil {
		return err
	}
	nets, err := docker(ctx, "network", "ls", "--filter", "label="+labelOwner, "--format", `{{.Label "`+labelOwner+`"}} {{.Label "`+labelRun+`"}}`)
	if err != nil {
		return err
	}
	dead := map[string]bool{}
	for _, line := range strings.Split(out+"\n"+nets, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if pid, err := strconv.Atoi(f[0]); err == nil && !alive(pid) {
			dead[f[1]] = true
		}
	}
	var errs []error
	for run := range dead {
		errs = append(errs, removeLabelled(ctx, labelRun+"="+run))
	}
	return errors.Join(errs...)
}

// alive reports whether a process with pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeLabelled force-removes the containers, then the networks, that
// carry label (key=value).
func removeLabelled(ctx context.Context, label string) error {
	ids, err := docker(ctx, "ps", "-aq", "--filter", "label="+label)
	if err != nil {
		return err
	}
	if ids != "" {
		if _, err := docker(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			return err
		}
	}
	nets, err := docker(ctx, "network", "ls", "-q", "--filter", "label="+label)
	if err != nil {
		return err
	}
	if nets != "" {
		if _, err := docker(ctx, append([]string{"network", "rm"}, strings.Fields(nets)...)...); err != nil {
			return err
		}
	}
	return nil
}

// docker runs the docker CLI and returns its trimmed output.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Container is one container of a docker provider cluster, as the daemon
// reports it.
type Container struct {
	Name string
	// Addr is its address on the cluster's network ("" when disconnected).
	Addr string
}

// Containers lists the containers of this run the daemon has, pixelflow's
// and the stores', with their addresses on the run's network. Empty on the
// local provider, and after Close.
func (c *Cluster) Containers(ctx context.Context) ([]Container, error) {
	if c.ctr == nil {
		return nil, nil
	}
	return c.ctr.list(ctx)
}

// ContainerLabel is the label (key=value) every container and network of
// this cluster carries; "" on the local provider.
func (c *Cluster) ContainerLabel() string {
	if c.ctr == nil {
		return ""
	}
	return labelRun + "=" + c.ctr.run
}

func (cs *containers) list(ctx context.Context) ([]Container, error) {
	ids, err := docker(ctx, "ps", "-aq", "--filter", "label="+labelRun+"="+cs.run)
	if err != nil || ids == "" {
		return nil, err
	}
	tmpl := `{{.Name}} {{with index .NetworkSettings.Networks "` + cs.network + `"}}{{.IPAddress}}{{end}}`
	out, err := docker(ctx, append([]string{"inspect", "-f", tmpl}, strings.Fields(ids)...)...)
	if err != nil {
		return nil, err
	}
	var list []Container
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ct := Container{Name: strings.TrimPrefix(f[0], "/")}
		if len(f) > 1 {
			ct.Addr = f[1]
		}
		list = append(list, ct)
	}
	return list, nil
}
