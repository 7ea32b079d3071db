package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-connections/nat"
	"github.com/testcontainers/testcontainers-go"
	tcmongo "github.com/testcontainers/testcontainers-go/modules/mongodb"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/pixelflow/pixelflow/internal/harness/redisaof"
	"github.com/pixelflow/pixelflow/internal/harness/slowdisk"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// Images the docker provider runs: the registry's, or the ones `make
// images` builds offline under names of their own (scripts/images.sh),
// which never shadow a registry's tag.
const (
	MongoImage      = "mongo:7.0"
	RedisImage      = "redis:7.2"
	LocalRedisImage = "pixelflow-redis:local"
)

// redisImage is the Redis image to run: the registry's when the daemon has
// it, else make images' own when that is there, else the registry's (to be
// pulled).
func redisImage(ctx context.Context) string {
	if HasImage(ctx, RedisImage) || !HasImage(ctx, LocalRedisImage) {
		return RedisImage
	}
	return LocalRedisImage
}

// HasImage reports whether the Docker daemon has ref locally.
func HasImage(ctx context.Context, ref string) bool {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false
	}
	defer p.Close()
	_, err = p.Client().ImageInspect(ctx, ref)
	return err == nil
}

// redisBackend is a Redis the drills can crash and bring back. Its address
// may change across a restart (a container's mapped port); the cluster's
// proxy follows it.
type redisBackend interface {
	Addr() string
	// Kill stops Redis at once (SIGKILL or container stop with no grace).
	Kill(ctx context.Context) error
	// Start brings it back, with its AOF data, or empty when wipe is set.
	Start(ctx context.Context, wipe bool) error
	// Pause freezes it (SIGSTOP), Resume continues it.
	Pause() error
	Resume() error
	// LoseTail kills it, cuts its newest writes (at least entries XADDs)
	// from its AOF and starts it again.
	LoseTail(ctx context.Context, entries int) (redisaof.Cut, error)
	// SlowDisk delays every fsync by delay until heal is called.
	SlowDisk(ctx context.Context, delay time.Duration) (heal func() error, err error)
	Close()
}

// localRedis is a redis-server child process with AOF on, configured as
// pixelflow's own private Redis is (redisproc).
type localRedis struct{ srv *redisproc.Server }

func startLocalRedis(ctx context.Context, dir string, fsyncEveryWrite bool) (*localRedis, error) {
	srv, err := redisproc.Start(ctx, redisproc.Options{Dir: filepath.Join(dir, "redis"), AppendOnly: true, FsyncEveryWrite: fsyncEveryWrite})
	if err != nil {
		return nil, err
	}
	return &localRedis{srv: srv}, nil
}

func (r *localRedis) Addr() string                               { return r.srv.Addr() }
func (r *localRedis) Kill(context.Context) error                 { r.srv.Kill(); return nil }
func (r *localRedis) Start(ctx context.Context, wipe bool) error { return r.srv.Restart(ctx, wipe) }
func (r *localRedis) Close()                                     { r.srv.Kill() }
func (r *localRedis) Pause() error                               { return r.srv.Pause() }
func (r *localRedis) Resume() error                              { return r.srv.Resume() }

func (r *localRedis) SlowDisk(ctx context.Context, delay time.Duration) (func() error, error) {
	pid := r.srv.Pid()
	if pid == 0 {
		return nil, fmt.Errorf("slow the redis disk: %w", ErrRedisDown)
	}
	f, err := slowdisk.Attach(ctx, pid, delay)
	if err != nil {
		if r.srv.Pid() != pid { // killed meanwhile (another fault)
			return nil, fmt.Errorf("slow the redis disk: %w (%v)", ErrRedisDown, err)
		}
		return nil, fmt.Errorf("slow the redis disk: %w", err)
	}
	return func() error { f.Stop(); return nil }, nil
}

func (r *localRedis) LoseTail(ctx context.Context, entries int) (redisaof.Cut, error) {
	r.srv.Kill()
	cut, err := redisaof.CutTail(r.srv, entries, func(args []string) bool { return strings.EqualFold(args[0], "XADD") })
	if err != nil {
		// Bring Redis back as it was: a failed fault must not become
		// another one.
		return cut, errors.Join(err, r.srv.Restart(ctx, false))
	}
	return cut, r.srv.Restart(ctx, false)
}

// dockerRedis is a Redis container (testcontainers modules/redis) with AOF,
// fsynced once a second like compose.yaml's and pixelflow's private one.
type dockerRedis struct {
	ctr    *tcredis.RedisContainer
	labels map[string]string // the run's (containers.labelMap): cleanup finds it by them
	paused bool
}

func startDockerRedis(ctx context.Context, labels map[string]string) (*dockerRedis, error) {
	ctr, err := tcredis.Run(ctx, redisImage(ctx),
		testcontainers.WithCmd("redis-server", "--appendonly", "yes", "--appendfsync", "everysec"),
		testcontainers.WithLabels(labels))
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("redis container: %w", err)
	}
	return &dockerRedis{ctr: ctr, labels: labels}, nil
}

func (r *dockerRedis) Addr() string { return endpoint(r.ctr, "6379/tcp") }

// endpoint is where a container's port is mapped on this host; a refused
// address when it is not running, so the proxy in front fails like a dead
// store.
func endpoint(ctr testcontainers.Container, port nat.Port) string {
	ep, err := ctr.PortEndpoint(context.Background(), port, "")
	if err != nil {
		return "127.0.0.1:1"
	}
	return ep
}

func (r *dockerRedis) Kill(ctx context.Context) error {
	zero := time.Duration(0)
	if err := r.ctr.Stop(ctx, &zero); err != nil {
		return fmt.Errorf("stop redis container: %w", err)
	}
	return nil
}

func (r *dockerRedis) Start(ctx context.Context, wipe bool) error {
	if wipe {
		_ = testcontainers.TerminateContainer(r.ctr)
		fresh, err := startDockerRedis(ctx, r.labels)
		if err != nil {
			return err
		}
		r.ctr = fresh.ctr
		return nil
	}
	if err := r.ctr.Start(ctx); err != nil {
		return fmt.Errorf("start redis container: %w", err)
	}
	return nil
}

func (r *dockerRedis) Close() { _ = testcontainers.TerminateContainer(r.ctr) }

// ErrRedisDown: a fault that needs a running redis-server found it down
// (killed by another fault, not restarted yet).
var ErrRedisDown = errors.New("redis-server is not running")

// errContainer: faults only implemented for redis-server children
// (Cluster.CannotInject says so before a drill tries).
var errContainer = errors.New("not implemented for the Redis container (local provider only)")

// Pause freezes the Redis container (the cgroup freezer, docker pause).
func (r *dockerRedis) Pause() error {
	r.paused = true
	if _, err := docker(context.Background(), "pause", r.ctr.GetContainerID()); err != nil {
		return fmt.Errorf("pause redis: %w", err)
	}
	return nil
}

// Resume thaws a paused Redis container; a no-op when not paused.
func (r *dockerRedis) Resume() error {
	if !r.paused {
		return nil
	}
	r.paused = false
	if _, err := docker(context.Background(), "unpause", r.ctr.GetContainerID()); err != nil {
		return fmt.Errorf("resume redis: %w", err)
	}
	return nil
}
func (r *dockerRedis) SlowDisk(context.Context, time.Duration) (func() error, error) {
	return nil, fmt.Errorf("slow the redis disk: %w", errContainer)
}
func (r *dockerRedis) LoseTail(context.Context, int) (redisaof.Cut, error) {
	return redisaof.Cut{}, fmt.Errorf("cut the redis AOF: %w", errContainer)
}

// mongoBackend is a single-node MongoDB replica set.
type mongoBackend interface {
	Addr() string
	Close()
}

type dockerMongo struct{ ctr *tcmongo.MongoDBContainer }

// startDockerMongo runs a one-node replica set and returns once the node
// is a writable primary. The module's readiness check (rs.status().ok
// after its rs.initiate hook) passes while the node may still be
// SECONDARY or electing itself; pixelflow's first write (its indexes)
// would then fail with NotWritablePrimary and the api exit while starting.
func startDockerMongo(ctx context.Context, labels map[string]string) (*dockerMongo, error) {
	ctr, err := tcmongo.Run(ctx, MongoImage, tcmongo.WithReplicaSet("rs0"), testcontainers.WithLabels(labels))
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("mongodb container: %w", err)
	}
	m := &dockerMongo{ctr: ctr}
	if err := waitWritablePrimary(ctx, m.Addr(), nil, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("mongodb container: %w", err)
	}
	return m, nil
}

func (m *dockerMongo) Addr() string { return endpoint(m.ctr, "27017/tcp") }

func (m *dockerMongo) Close() { _ = testcontainers.TerminateContainer(m.ctr) }

// localMongo is a mongod child process run as a one-node replica set, for
// machines with mongod installed but no Docker.
type localMongo struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startLocalMongo(ctx context.Context, dir string) (*localMongo, error) {
	port, err := redisproc.FreePort()
	if err != nil {
		return nil, err
	}
	dbpath := filepath.Join(dir, "mongod")
	if err := os.MkdirAll(dbpath, 0o755); err != nil {
		return nil, fmt.Errorf("mongod dir: %w", err)
	}
	cmd := exec.Command("mongod", "--replSet", "rs0", "--bind_ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dbpath", dbpath, "--logpath", filepath.Join(dir, "mongod.log"), "--quiet")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mongod: %w", err)
	}
	m := &localMongo{port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(m.done) }()
	if err := m.initiate(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("mongod replica set (log %s): %w", filepath.Join(dir, "mongod.log"), err)
	}
	return m, nil
}

// initiate runs replSetInitiate and waits until the node is primary.
func (m *localMongo) initiate(ctx context.Context) error {
	cfg := bson.M{"_id": "rs0", "members": bson.A{bson.M{"_id": 0, "host": m.Addr()}}}
	initiated := false
	return waitWritablePrimary(ctx, m.Addr(), m.done, func(ctx context.Context, admin *mongo.Database) error {
		if initiated {
			return nil
		}
		if err := admin.RunCommand(ctx, bson.D{{Key: "replSetInitiate", Value: cfg}}).Err(); err != nil {
			return err
		}
		initiated = true
		return nil
	})
}

// waitWritablePrimary polls the one-node replica set at addr (directly,
// as pixelflow reaches it) until hello says it is a writable primary:
// transactions and index builds need a primary. Each round first runs
// prepare when given (it returns an error until it has done its work);
// exited, when given, ends the wait when the server process dies.
func waitWritablePrimary(ctx context.Context, addr string, exited <-chan struct{}, prepare func(context.Context, *mongo.Database) error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cl, err := mongo.Connect(ctx, options.Client().ApplyURI("mongodb://"+addr+"/?directConnection=true"))
	if err != nil {
		return err
	}
	defer func() { _ = cl.Disconnect(context.Background()) }()
	admin := cl.Database("admin")
	for {
		if prepare != nil {
			err = prepare(ctx, admin)
		}
		if prepare == nil || err == nil {
			var hello struct {
				IsWritablePrimary bool `bson:"isWritablePrimary"`
			}
			if err = admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err == nil && hello.IsWritablePrimary {
				return nil
			} else if err == nil {
				err = errors.New("not yet a writable primary")
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("mongod exited")
		case <-ctx.Done():
			return fmt.Errorf("%s not a writable primary in time: %v", addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *localMongo) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

func (m *localMongo) Close() {
	select {
	case <-m.done:
	default:
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.done
	}
}
