// Package redisproc runs redis-server as a child process on a loopback port.
// `serve` uses it when no REDIS_URL is given; tests, e2e and chaos drills use
// it to kill Redis for real (SIGKILL by pid) and bring it back on the same
// port, with or without its data.
package redisproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled explains how to get redis-server when it is not on PATH.
// The container image never has one (it holds the pixelflow binary alone),
// so the message names REDIS_URL first.
var ErrNotInstalled = errors.New("redis-server not found on PATH: set REDIS_URL to a running Redis (redis://HOST:6379; the container image has no redis-server, and compose.yaml and compose.offline.yaml set it), or install redis-server (sudo apt-get install -y redis-server on Debian/Ubuntu)")

// Installed reports ErrNotInstalled when Start could not find redis-server.
func Installed() error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return ErrNotInstalled
	}
	return nil
}

// Options configure a server.
type Options struct {
	// Dir holds the server's data and log. Required.
	Dir string
	// Port to listen on; 0 picks a free loopback port once, kept across restarts.
	Port int
	// AppendOnly turns AOF persistence on, so a SIGKILL of the process
	// loses nothing (every write reaches the kernel before Redis replies);
	// off, a restart comes back empty. The file is fsynced once a second
	// (appendfsync everysec), on Redis's background thread: a crash of the
	// whole machine may lose the last second, which the relay repairs from
	// the outbox (the tail-loss drills), while a disk that stalls (an ext4
	// journal commit here takes 40–70 ms twice a minute) never holds up a
	// reply. compose.yaml runs Redis the same way.
	AppendOnly bool
	// FsyncEveryWrite fsyncs the AOF before every reply (appendfsync
	// always), the setting pixelflow used before: every disk stall then
	// stalls every delivery. pixelflow never sets it; tests do, to show they
	// catch a Redis that waits for its disk.
	FsyncEveryWrite bool
	// Temporary makes Dir the server's own: Close removes it (a private
	// server of DATA_DIR=memory leaves nothing behind in the temp folder).
	Temporary bool
	// Config, when set, is written to <Dir>/redis.conf at the first start
	// and given to the server as its configuration file; a restart keeps
	// the file, which a Sentinel rewrites with what it learned (its id,
	// the current primary). pixelflow's own arguments override it.
	Config string
	// Sentinel runs the server as a Redis Sentinel (--sentinel): Config
	// then holds its "sentinel monitor" lines.
	Sentinel bool
	// Args are further redis-server arguments, after pixelflow's own
	// (later ones win): replication, cluster mode, TLS, ACL users. The
	// server must still answer a plain PING on Port.
	Args []string

	// onThread, set only by tests (export_test.go), runs on the locked
	// thread just before the child is forked: a test forks a child of its
	// own from that thread and checks the thread's end spares it.
	onThread func()
}

// Server is one redis-server child.
type Server struct {
	opts     Options
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	paused   bool
	leftover int // pid of a leftover server the last start stopped
}

// PidFile is the file in Options.Dir that records the running server's
// pid, so that the next start on the directory can stop a server left
// behind (see start).
const PidFile = "redis-server.pid"

// Start launches redis-server and waits until it answers PING.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("redisproc: Options.Dir is required")
	}
	// redis-server changes into --dir before it opens --logfile, so a
	// relative path would be resolved twice.
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	opts.Dir = abs
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	if opts.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		opts.Port = p
	}
	s := &Server{opts: opts}
	if err := s.start(ctx); err != nil {
		if opts.Temporary {
			_ = os.RemoveAll(opts.Dir)
		}
		return nil, err
	}
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.opts.Port)) }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// ReplicaArgs are the Options.Args that start a replica of s.
func (s *Server) ReplicaArgs() []string {
	return []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.opts.Port)}
}

// Pid returns the child's pid, 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) start(ctx context.Context) error {
	var args []string
	if s.opts.Config != "" {
		conf := filepath.Join(s.opts.Dir, "redis.conf")
		if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(conf, []byte(s.opts.Config), 0o600); err != nil {
				return fmt.Errorf("write redis config: %w", err)
			}
		}
		args = append(args, conf)
	}
	if s.opts.Sentinel {
		args = append(args, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.opts.Port),
		"--bind", "127.0.0.1",
		"--dir", s.opts.Dir,
		"--save", "",
		"--protected-mode", "yes",
		"--logfile", filepath.Join(s.opts.Dir, "redis.log"),
	)
	if s.opts.AppendOnly {
		fsync := "everysec"
		if s.opts.FsyncEveryWrite {
			fsync = "always"
		}
		args = append(args, "--appendonly", "yes", "--appendfsync", fsync)
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, s.opts.Args...)
	left, err := stopLeftover(s.opts.Dir)
	if err != nil {
		return err
	}
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	// Linux binds the death signal to the thread that forks the child,
	// not to the process: when that thread ends, the child is killed. The
	// Go runtime ends a thread whenever a goroutine locked to it returns
	// locked, and any goroutine may run on the thread that ran Start. So
	// the child is forked from a goroutine locked to its thread for the
	// child's whole life (it waits for the child), which no other
	// goroutine can run on or end. Before issue 28 item 3.4, Start ran on
	// whatever thread the caller had, and such a thread's end killed the
	// private Redis while pixelflow lived on.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		// Locked for the child's whole life, then unlocked: a goroutine
		// that returns locked ends its thread, and the kernel then sends
		// the death signal to every child that thread ever started, not
		// only this one (in the chaos harness, a gateway started on that
		// thread before it was locked was SIGKILLed when Redis stopped).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if s.opts.onThread != nil {
			s.opts.onThread()
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.mu.Lock()
	s.cmd, s.done, s.leftover = cmd, done, left
	s.mu.Unlock()
	if err := os.WriteFile(filepath.Join(s.opts.Dir, PidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		s.Kill()
		return fmt.Errorf("redisproc: record pid: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr()); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start; see %s", filepath.Join(s.opts.Dir, "redis.log"))
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within 10s", s.Addr())
		}
	}
}

// ping sends an inline PING and waits for +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected PING answer %q", line)
	}
	return nil
}

// Kill sends SIGKILL to the server (only the process this package started)
// and waits for it to exit. A paused server is resumed first, so nothing
// is ever left stopped behind.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done, paused := s.cmd, s.done, s.paused
	s.cmd, s.paused = nil, false
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Kill()
	<-done
	pf := filepath.Join(s.opts.Dir, PidFile)
	if b, err := os.ReadFile(pf); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid) {
		_ = os.Remove(pf)
	}
}

// Leftover is the pid of a server left behind on Dir (recorded in PidFile,
// still running there) that the last start stopped first; 0 when none.
func (s *Server) Leftover() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leftover
}

// stopLeftover stops the redis-server recorded in dir's PidFile if it still
// runs on dir, and returns its pid (0: none). The death signal ends the
// server when its parent dies, but the kernel releases the parent's files,
// the DATA_DIR lock among them, before it signals the children: a new
// process holding DATA_DIR could start its server while the old one still
// runs on the same AOF. A server is taken for the recorded one only if it
// is a redis-server whose working directory is dir (redis-server changes
// into --dir), so a pid reused by another process is never touched.
func stopLeftover(dir string) (int, error) {
	pf := filepath.Join(dir, PidFile)
	b, err := os.ReadFile(pf)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redisproc: read %s: %w", pf, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !runsIn(pid, dir) {
		return 0, nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return pid, fmt.Errorf("redisproc: a redis-server left behind (pid %d, recorded in %s) still runs on %s and cannot be stopped: %w", pid, pf, dir, err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("redisproc: a redis-server left behind (pid %d, recorded in %s) did not exit within 10s of SIGKILL", pid, pf)
		}
	}
	return pid, nil
}

// runsIn reports whether pid is a live redis-server working in dir.
func runsIn(pid int, dir string) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "redis-server" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return err == nil && cwd == dir && alive(pid)
}

// alive reports whether pid exists and has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st != 'Z' && st != 'X'
}

// Close kills the server and, when Options.Temporary, removes its directory.
func (s *Server) Close() error {
	s.Kill()
	if s.opts.Temporary {
		if err := os.RemoveAll(s.opts.Dir); err != nil {
			return fmt.Errorf("remove redis dir: %w", err)
		}
	}
	return nil
}

// Pause freezes the server (SIGSTOP), as a stalled host or a long fork:
// connections stay open and nothing answers. Resume (or Kill) ends it.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redisproc: pause: not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redisproc: pause: %w", err)
	}
	s.paused = true
	return nil
}

// Resume continues a paused server (SIGCONT); a no-op when not paused.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || !s.paused {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redisproc: resume: %w", err)
	}
	s.paused = false
	return nil
}

// Paused reports whether the server is paused.
func (s *Server) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// AppendOnly reports whether the server persists with an append-only file.
func (s *Server) AppendOnly() bool { return s.opts.AppendOnly }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.opts.Dir }

// Restart starts the server again on the same port and directory. With
// wipe, its data files are removed first: Redis comes back empty.
func (s *Server) Restart(ctx context.Context, wipe bool) error {
	s.Kill()
	if wipe {
		for _, p := range []string{"appendonlydir", "appendonly.aof", "dump.rdb"} {
			if err := os.RemoveAll(filepath.Join(s.opts.Dir, p)); err != nil {
				return fmt.Errorf("wipe redis data: %w", err)
			}
		}
	}
	return s.start(ctx)
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
