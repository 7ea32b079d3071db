package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/pixelflow once into dir and returns the binary's path.
// The suites run pixelflow as real processes, as it runs in production.
// tags are build tags: the suites and drills build with "failpoints"
// (Options.Failpoints); the load test measures the production build.
func Build(ctx context.Context, dir string, tags ...string) (string, error) {
	bin := filepath.Join(dir, "pixelflow")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "github.com/pixelflow/pixelflow/cmd/pixelflow")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build pixelflow: %w\n%s", err, out)
	}
	return bin, nil
}

// Process is one pixelflow process (a role) that a test can stop, kill and
// start again on the same port, so clients reconnect to the same address.
type Process struct {
	Name string
	Bin  string
	Role string
	Port int
	Env  []string // KEY=VALUE, on top of a minimal environment
	Log  string   // path of the combined stdout/stderr, kept across restarts
	// FailpointFile, when set, is the process's PIXELFLOW_FAILPOINTS_FILE:
	// Arm writes it (the binary must be built with -tags failpoints).
	FailpointFile string

	// ctr, when set, runs the process as a container of the docker
	// provider (docker run in the foreground is then the child).
	ctr *containers

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
	// disconnected: a container cut off its network (Disconnect).
	disconnected bool
}

// URL is the process's http base URL.
func (p *Process) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.Port) }

// InternalURL is where the other pixelflow processes reach this one: its
// address on the docker provider's network, else URL.
func (p *Process) InternalURL() string {
	if p.ctr != nil {
		return "http://" + p.Name + ":" + strconv.Itoa(p.Port)
	}
	return p.URL()
}

// Pid is the running process's id (a container's main process, as the
// host sees it), 0 when stopped.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !p.running() {
		return 0
	}
	if p.ctr != nil {
		// The container's PID 1 is docker-init; pixelflow is its child.
		out, err := docker(context.Background(), "inspect", "-f", "{{.State.Pid}}", p.ctr.name(p.Name))
		if err != nil {
			return 0
		}
		kids, err := os.ReadFile("/proc/" + out + "/task/" + out + "/children")
		if err != nil {
			return 0
		}
		if f := strings.Fields(string(kids)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			return pid
		}
		return 0
	}
	return p.cmd.Process.Pid
}

// InContainer reports whether the process runs as a container.
func (p *Process) InContainer() bool { return p.ctr != nil }

func (p *Process) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Start launches the process and waits until GET /readyz answers 200. The
// child is in its own process group and dies with the test binary
// (Pdeathsig), so a crashed test leaves nothing behind.
func (p *Process) Start(ctx context.Context) error { return p.start(ctx, "/readyz") }

// StartLive launches the process and waits only until it serves (GET
// /healthz answers 200), not until it is ready: a restart while its
// dependencies are down (Redis killed by another fault) completes, and the
// process becomes ready when they return, as under a supervisor.
func (p *Process) StartLive(ctx context.Context) error { return p.start(ctx, "/healthz") }

func (p *Process) start(ctx context.Context, until string) error {
	p.mu.Lock()
	if p.running() {
		p.mu.Unlock()
		return fmt.Errorf("%s: already running", p.Name)
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: open log: %w", p.Name, err)
	}
	fmt.Fprintf(logf, "=== start %s %s at %s\n", p.Role, p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Bin, p.Role)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOST=127.0.0.1", "PORT=" + strconv.Itoa(p.Port)}, p.Env...)
	if p.FailpointFile != "" {
		cmd.Env = append(cmd.Env, "PIXELFLOW_FAILPOINTS_FILE="+p.FailpointFile)
	}
	if p.ctr != nil {
		env := append([]string{"HOST=0.0.0.0", "PORT=" + strconv.Itoa(p.Port)}, p.Env...)
		if p.FailpointFile != "" {
			env = append(env, "PIXELFLOW_FAILPOINTS_FILE="+p.FailpointFile)
		}
		// A killed container's removal (--rm) may still be under way.
		_, _ = docker(ctx, "rm", "-f", p.ctr.name(p.Name))
		cmd = exec.Command("docker", p.ctr.runArgs(p, env)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.mu.Unlock()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	p.cmd, p.done, p.paused, p.disconnected = cmd, done, false, false
	p.mu.Unlock()
	return p.waitFor(ctx, done, until)
}

func (p *Process) waitFor(ctx context.Context, done chan struct{}, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(p.URL() + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited while starting; log %s:\n%s", p.Name, p.Log, p.Tail(20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on %s: %w; log:\n%s", p.Name, p.URL(), ctx.Err(), p.Tail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop asks the process to shut down gracefully (SIGTERM) and kills it if
// it has not exited within grace.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = p.Resume() // a stopped process cannot act on SIGTERM
	if p.ctr != nil {
		_, _ = docker(context.Background(), "kill", "-s", "TERM", p.ctr.name(p.Name))
	} else {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, grace)
	}
}

// Kill ends the process at once (SIGKILL to its process group), as a crash.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = p.Resume()
	if p.ctr != nil {
		_, _ = docker(context.Background(), "kill", p.ctr.name(p.Name))
		select {
		case <-done:
			return
		case <-time.After(10 * time.Second): // the CLI did not see its container end
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Pause freezes the process (SIGSTOP to its process group), as a GC pause,
// a frozen VM or a host swapping would: its sockets stay open, nothing
// answers and no timer of its own fires. Resume ends it; Stop and Kill
// resume first, so no process is left stopped behind a test.
func (p *Process) Pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return fmt.Errorf("%s: pause: not running", p.Name)
	}
	if p.ctr != nil {
		// The cgroup freezer: every process of the container at once.
		if _, err := docker(context.Background(), "pause", p.ctr.name(p.Name)); err != nil {
			return fmt.Errorf("%s: pause: %w", p.Name, err)
		}
	} else if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("%s: pause: %w", p.Name, err)
	}
	p.paused = true
	return nil
}

// Resume continues a paused process (SIGCONT); a no-op when not paused.
func (p *Process) Resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return nil
	}
	p.paused = false
	if !p.running() {
		return nil
	}
	if p.ctr != nil {
		if _, err := docker(context.Background(), "unpause", p.ctr.name(p.Name)); err != nil {
			return fmt.Errorf("%s: resume: %w", p.Name, err)
		}
		return nil
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("%s: resume: %w", p.Name, err)
	}
	return nil
}

// ErrNotAContainer is returned by the faults only a container can take.
var ErrNotAContainer = errors.New("not a container (the docker provider runs pixelflow processes as containers)")

// Disconnect cuts a container off its network: Redis, the api, the other
// processes and its clients (its published port leads nowhere) are all
// out of reach, and it out of theirs, while it keeps running. Reconnect
// ends it; a container started again after Kill or Stop is connected.
func (p *Process) Disconnect(ctx context.Context) error {
	if p.ctr == nil {
		return fmt.Errorf("%s: disconnect: %w", p.Name, ErrNotAContainer)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return fmt.Errorf("%s: disconnect: not running", p.Name)
	}
	if _, err := docker(ctx, "network", "disconnect", p.ctr.network, p.ctr.name(p.Name)); err != nil {
		return fmt.Errorf("%s: disconnect: %w", p.Name, err)
	}
	p.disconnected = true
	return nil
}

// Reconnect joins a disconnected container to its network again, under
// its name; a no-op when not disconnected.
func (p *Process) Reconnect(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.disconnected {
		return nil
	}
	p.disconnected = false
	if !p.running() {
		return nil
	}
	if _, err := docker(ctx, "network", "connect", "--alias", p.Name, p.ctr.network, p.ctr.name(p.Name)); err != nil {
		return fmt.Errorf("%s: reconnect: %w", p.Name, err)
	}
	return nil
}

// Paused reports whether the process is paused.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Exited returns a channel closed when the current run of the process
// ends (nil if it was never started): a drill waits on it for a crash a
// failpoint caused.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Arm sets the process's failpoints from now on (package failpoint's
// syntax: "name=action[@N];…"; "" disarms everything the file armed). The
// file is replaced atomically; the process reads it at its next hit.
func (p *Process) Arm(spec string) error {
	if p.FailpointFile == "" {
		return fmt.Errorf("%s: arm failpoints: the cluster was started without Options.Failpoints", p.Name)
	}
	tmp := p.FailpointFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(spec+"\n"), 0o644); err != nil {
		return fmt.Errorf("%s: arm failpoints: %w", p.Name, err)
	}
	if err := os.Rename(tmp, p.FailpointFile); err != nil {
		return fmt.Errorf("%s: arm failpoints: %w", p.Name, err)
	}
	return nil
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
