// Package e2e runs pixelflow as real processes against real stores and
// proves, with the history checker, that every acknowledged pixel reaches
// every client. The same suites run on two providers:
//
//   - docker: MongoDB (a replica set) and Redis (AOF) in containers via
//     testcontainers, chosen automatically when Docker is healthy and has
//     the images (no registry is needed once they are there);
//   - local: redis-server child processes and the embedded store (or a
//     mongod replica-set child when mongod is on PATH), for machines
//     without Docker.
//
// E2E_PROVIDER=docker|local overrides the choice, E2E_STORE=embedded|mongodb
// the store's (local only: docker always runs MongoDB). The store decides
// the cluster's shape (Topology): on MongoDB the relays are processes of
// their own, as in production; on the embedded store the relay lives in the
// api process. Tests read that shape from Cluster.Topology, so the docker
// topology runs unchanged on any machine with mongod. Either way every link
// from pixelflow to a store goes through an in-process toxiproxy, so the
// chaos drills (package chaos) can cut links and restart stores without
// reconfiguring pixelflow. The chaos drills and the load test build on the
// Cluster, Writer and Watchers defined here.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/pixelflow/pixelflow/internal/harness/redisaof"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// Provider names.
const (
	Docker = "docker"
	Local  = "local"
)

// DockerState is what the docker provider needs from this machine: a
// daemon that answers, and the images it runs (Images), present locally.
type DockerState struct {
	// Healthy: the daemon answered; Reason says why not otherwise.
	Healthy bool
	Reason  string
	// Missing lists the images the docker provider would run that the
	// daemon does not have.
	Missing []string
}

// Images are the images the docker provider needs, each with the ones that
// can stand in for it: Redis (the registry's or make images') and the
// runtime base its pixelflow containers run on. MongoDB is not among them:
// without its image the cluster runs the embedded store (ChooseStore).
func Images() [][]string {
	return [][]string{{RedisImage, LocalRedisImage}, {BaseImage, DistrolessImage}}
}

// ChooseProvider returns the provider to run on and why. E2E_PROVIDER wins;
// otherwise docker when the daemon answers and has every image the
// provider runs, else local, saying which images are missing: a machine
// without a registry cannot pull them, so a healthy daemon alone is no
// reason to pick docker. Asking for docker where there is no daemon is an
// error, never a quiet fallback; with E2E_PROVIDER=docker missing images
// are pulled (a machine with a registry, such as GitHub's runners).
func ChooseProvider(ctx context.Context, getenv func(string) string, probe func(context.Context) DockerState) (name, why string, err error) {
	switch want := getenv("E2E_PROVIDER"); want {
	case Docker:
		if d := probe(ctx); !d.Healthy {
			return "", "", fmt.Errorf("E2E_PROVIDER=docker but Docker is not usable: %s", d.Reason)
		}
		return Docker, "E2E_PROVIDER=docker", nil
	case Local:
		return Local, "E2E_PROVIDER=local", nil
	case "":
		switch d := probe(ctx); {
		case !d.Healthy:
			return Local, "no healthy Docker (" + d.Reason + ")", nil
		case len(d.Missing) > 0:
			return Local, fmt.Sprintf("Docker is healthy but lacks images the docker provider runs: %s; `make images` builds every one that can be built without a registry, and E2E_PROVIDER=docker pulls the rest", strings.Join(d.Missing, ", ")), nil
		default:
			return Docker, "Docker is healthy and has the images it runs", nil
		}
	default:
		return "", "", fmt.Errorf("E2E_PROVIDER=%q: want docker or local", want)
	}
}

// ProbeDocker asks the Docker daemon, through testcontainers' own client,
// whether it answers and which of Images it lacks.
func ProbeDocker(ctx context.Context) (st DockerState) {
	defer func() {
		// testcontainers panics on some host configurations without Docker.
		if r := recover(); r != nil {
			st = DockerState{Reason: fmt.Sprint(r)}
		}
	}()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return DockerState{Reason: err.Error()}
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		return DockerState{Reason: err.Error()}
	}
	st.Healthy = true
	for _, alts := range Images() {
		if !slices.ContainsFunc(alts, func(ref string) bool {
			_, err := p.Client().ImageInspect(ctx, ref)
			return err == nil
		}) {
			st.Missing = append(st.Missing, strings.Join(alts, " or "))
		}
	}
	return st
}

// Prepare is what a suite's TestMain does once: build the binary into dir
// (with the build tags given: the suites and drills build with
// "failpoints") and choose the provider and store, saying loudly which and why.
func Prepare(ctx context.Context, dir string, tags ...string) (bin, provider string, err error) {
	if bin, err = Build(ctx, dir, tags...); err != nil {
		return "", "", err
	}
	// Before testcontainers reads its configuration (once, at its first
	// use: ProbeDocker below).
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		// Ryuk's image cannot be pulled without a registry; the harness
		// removes what it starts by label (sweepLeftovers), crashes too.
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		if _, err := net.InterfaceByName("docker0"); err == nil {
			// The daemon runs in this network namespace (its bridge is
			// here), so its published ports are on this loopback. Inside a
			// sandbox that looks like a container (/.dockerenv),
			// testcontainers would otherwise dial the default gateway.
			_ = os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
		}
	}
	provider, why, err := ChooseProvider(ctx, os.Getenv, ProbeDocker)
	if err != nil {
		return "", "", err
	}
	store, storeWhy, err := ChooseStore(provider, "", os.Getenv, exec.LookPath, HasImage)
	if err != nil {
		return "", "", err
	}
	fmt.Fprintf(os.Stderr, "pixelflow suites: provider %s (%s), store %s (%s): %s\n", provider, why, store, storeWhy, TopologyFor(store))
	return bin, provider, nil
}

// StoreKind is which store a cluster runs.
type StoreKind string

// Store kinds.
const (
	// StoreEmbedded is lungo inside the api process (memory or file).
	StoreEmbedded StoreKind = "embedded"
	// StoreMongo is a one-node MongoDB replica set (a container, or a
	// mongod child process).
	StoreMongo StoreKind = "mongodb"
)

// ChooseStore returns the store a cluster on provider runs and why: want
// (Options.Store) wins, then E2E_STORE=embedded|mongodb, else MongoDB on
// docker when the daemon has its image (hasImage) and, on local, when
// mongod is on PATH; the embedded store otherwise. Asking for what the
// provider cannot give is an error, never a quiet fallback (on docker a
// MongoDB asked for is pulled).
func ChooseStore(provider string, want StoreKind, getenv func(string) string, lookPath func(string) (string, error), hasImage func(context.Context, string) bool) (StoreKind, string, error) {
	why := "Options.Store"
	if want == "" {
		want, why = StoreKind(getenv("E2E_STORE")), "E2E_STORE="+getenv("E2E_STORE")
	}
	switch want {
	case "", StoreEmbedded, StoreMongo:
	default:
		return "", "", fmt.Errorf("store %q (%s): want %s or %s", want, why, StoreEmbedded, StoreMongo)
	}
	switch provider {
	case Docker:
		switch {
		case want != "":
			return want, why, nil
		case hasImage(context.Background(), MongoImage):
			return StoreMongo, "the daemon has " + MongoImage, nil
		default:
			return StoreEmbedded, "no " + MongoImage + " image: the embedded store, in the api container", nil
		}
	case Local:
		_, err := lookPath("mongod")
		switch {
		case want == StoreMongo && err != nil:
			return "", "", fmt.Errorf("store %s (%s) on the local provider needs mongod on PATH: %v", want, why, err)
		case want != "":
			return want, why, nil
		case err == nil:
			return StoreMongo, "mongod on PATH", nil
		default:
			return StoreEmbedded, "no mongod on PATH", nil
		}
	default:
		return "", "", fmt.Errorf("unknown provider %q", provider)
	}
}

// Link names a connection from pixelflow to a store; each runs through an
// in-process proxy that drills can cut.
type Link string

// Links.
const (
	LinkRedis Link = "redis"
	LinkMongo Link = "mongo"
)

// Topology is what a test may rely on about a cluster's shape. It differs
// by provider and store, so suites and drills read it from the cluster
// rather than assume the layout they were written on.
type Topology struct {
	Store StoreKind
	// RelayInAPI: the relay runs inside the api process. The embedded
	// store lives in that process, so its relay must too; on MongoDB the
	// relays are processes of their own (one leader, the rest standby),
	// and stopping the api leaves them running.
	RelayInAPI bool
	// Links are the store links that can be partitioned (cut at the
	// proxy): Redis always, MongoDB when it is the store (the embedded
	// store has no link).
	Links []Link
	// DatabaseReadable: the verification can read the store directly, as
	// well as through the API (MongoDB: Target.MongoURI). The embedded
	// store is reachable only through its process.
	DatabaseReadable bool
	// Redis is the Redis deployment (Options.Redis): "" for one node
	// behind the proxy, else redisurl.Sentinel or redisurl.Cluster,
	// whose link is not partitionable (no proxy).
	Redis redisurl.Mode
}

// TopologyFor is the shape a cluster on store has.
func TopologyFor(store StoreKind) Topology {
	if store == StoreMongo {
		return Topology{Store: StoreMongo, Links: []Link{LinkRedis, LinkMongo}, DatabaseReadable: true}
	}
	return Topology{Store: StoreEmbedded, RelayInAPI: true, Links: []Link{LinkRedis}}
}

// CanPartition reports whether link runs through a proxy a drill can cut.
func (t Topology) CanPartition(l Link) bool { return slices.Contains(t.Links, l) }

// String says the shape in words, for logs and reports.
func (t Topology) String() string {
	relay := "relays in processes of their own"
	if t.RelayInAPI {
		relay = "relay in the api process"
	}
	links := make([]string, len(t.Links))
	for i, l := range t.Links {
		links[i] = string(l)
	}
	redis := ""
	if !singleRedis(t.Redis) {
		redis = ", Redis " + string(t.Redis)
	}
	return fmt.Sprintf("%s store, %s%s, partitionable links: %s", t.Store, relay, redis, strings.Join(links, ", "))
}

// Options shape a cluster.
type Options struct {
	// Provider is Docker or Local (see ChooseProvider).
	Provider string
	// Bin is the pixelflow binary (Build).
	Bin string
	// Gateways is how many gateway processes run. Default 2.
	Gateways int
	// Relays is how many relay processes run when the store is MongoDB
	// (one active, the rest standby). Default 2. With the embedded store
	// the relay lives in the api process (Topology.RelayInAPI).
	Relays int
	// Store picks the store; empty leaves it to ChooseStore (E2E_STORE,
	// then what the provider has).
	Store StoreKind
	// Durable keeps the embedded store in a file, so the api can be
	// restarted without losing data (lungo rewrites the file on every
	// commit, so it is slower). Without it the embedded store is in memory.
	// MongoDB is always durable.
	Durable bool
	// Env adds settings to every pixelflow process (KEY=VALUE).
	Env []string
	// Failpoints gives every pixelflow process a failpoint file
	// (Process.Arm) so a drill can arm failpoints at a chosen moment. The
	// binary must be built with -tags failpoints (Prepare's tags); to arm
	// some from the start, put PIXELFLOW_FAILPOINTS in Env.
	Failpoints bool
	// Redis is how Redis is deployed: "" or redisurl.Single, one node
	// behind the proxy; redisurl.Sentinel or redisurl.Cluster, a
	// replicated topology of redis-server children (see topology.go).
	Redis redisurl.Mode
	// RedisFsyncEveryWrite runs the local provider's redis-server with
	// appendfsync always (redisproc.Options.FsyncEveryWrite): a drill's
	// teeth, restoring the setting that put disk stalls on the delivery path.
	RedisFsyncEveryWrite bool
}

// Cluster is one running deployment: stores behind proxies, an api (and
// relays), gateways.
type Cluster struct {
	Provider string
	// Store says in words which store runs, for logs and reports.
	Store string
	// Topology is the cluster's shape; tests take facts from it (where the
	// relay runs, what can be partitioned), never from assumptions.
	Topology Topology
	// MongoURI is pixelflow's MongoDB URI (through the proxy); empty when
	// the store is embedded.
	MongoURI string
	// RedisURL is pixelflow's Redis URL (through the proxy).
	RedisURL string

	RedisProxy, MongoProxy *Proxy
	// Sentinel and RedisCluster are the replicated Redis topology the
	// cluster runs on (Options.Redis), nil otherwise; RedisProxy is then
	// nil, as no one proxy can carry what they hand out (topology.go).
	Sentinel     *redistopo.SentinelSet
	RedisCluster *redistopo.Cluster
	// Shape is what it consists of (PlanShape of its options).
	Shape    Shape
	API      *Process
	Relays   []*Process
	Gateways []*Process

	redis      redisBackend
	mongo      mongoBackend
	ctr        *containers // the docker provider's pixelflow containers
	proxies    *Proxies
	dir        string
	failpoints bool
	durable    bool // the embedded store is a file under dir/data
	tb         testing.TB
}

// Start brings up a cluster and registers its teardown with tb. On a
// failed test the tail of every process log is printed.
func Start(ctx context.Context, tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := launch(ctx, tb, tb.TempDir(), opts)
	if c != nil {
		tb.Cleanup(func() {
			if err := c.Close(); err != nil {
				tb.Errorf("cluster teardown: %v", err)
			}
			if tb.Failed() {
				tb.Logf("%s", c.Logs(30))
			}
		})
	}
	if err != nil {
		tb.Fatalf("start cluster (%s): %v", opts.Provider, err)
	}
	tb.Logf("e2e cluster on provider %s, store: %s (%s), redis: %s", c.Provider, c.Store, c.Topology, c.redisAddrs())
	return c
}

// Launch brings up a cluster whose files live in dir; Close tears it
// down. On error the returned cluster (if any) must still be closed.
func Launch(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	return launch(ctx, nil, dir, opts)
}

// launch is Launch with the test that owns the cluster: replicated Redis
// topologies (package redistopo) tie their processes to it.
func launch(ctx context.Context, tb testing.TB, dir string, opts Options) (*Cluster, error) {
	if opts.Gateways == 0 {
		opts.Gateways = 2
	}
	if opts.Relays == 0 {
		opts.Relays = 2
	}
	c := &Cluster{Provider: opts.Provider, dir: dir, proxies: NewProxies(), durable: opts.Durable, tb: tb}
	var err error
	if c.Shape, err = PlanShape(opts); err != nil {
		return c, err
	}
	if err := c.start(ctx, opts); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	if opts.Provider == Docker && !singleRedis(opts.Redis) {
		// Sentinels and MOVED replies hand out the nodes' loopback
		// addresses, which a container cannot reach: a replicated Redis
		// runs on redis-server children, and pixelflow beside them as
		// processes. c.Provider says so in every log and report.
		opts.Provider, c.Provider = Local, Local+" (replicated Redis: redis-server children on loopback, which containers cannot reach)"
	}
	store, _, err := ChooseStore(opts.Provider, opts.Store, os.Getenv, exec.LookPath, HasImage)
	if err != nil {
		return err
	}
	c.Topology = TopologyFor(store)
	replicated, err := c.startReplicatedRedis(opts.Redis)
	if err != nil {
		return err
	}
	switch opts.Provider {
	case Docker:
		if c.ctr, err = newContainers(ctx, opts.Bin, c.dir); err != nil {
			return err
		}
		c.proxies = NewProxiesOn(c.ctr.gateway)
		r, err := startDockerRedis(ctx, c.ctr.labelMap())
		if err != nil { // not into c.redis: a nil *dockerRedis is a non-nil backend
			return err
		}
		c.redis = r
		if store == StoreMongo {
			m, err := startDockerMongo(ctx, c.ctr.labelMap())
			if err != nil {
				return err
			}
			c.mongo = m
			c.Store = "MongoDB replica set (container " + MongoImage + ")"
		} else {
			c.Store = "embedded lungo file store (in the api container)"
		}
	case Local:
		if !replicated {
			r, err := startLocalRedis(ctx, c.dir, opts.RedisFsyncEveryWrite)
			if err != nil {
				return err
			}
			c.redis = r
		}
		if store == StoreMongo {
			m, err := startLocalMongo(ctx, c.dir)
			if err != nil {
				return err
			}
			c.mongo = m
			c.Store = "MongoDB replica set (mongod child process)"
		} else {
			c.Store = "embedded lungo file store"
		}
	default:
		return fmt.Errorf("unknown provider %q", opts.Provider)
	}
	if !replicated {
		if c.RedisProxy, err = c.proxies.Add("redis", c.redis.Addr()); err != nil {
			return err
		}
		c.RedisURL = "redis://" + c.RedisProxy.Addr()
	}
	env := append([]string{"REDIS_URL=" + c.RedisURL, "RATE_LIMIT=0", "LOG_LEVEL=info", "LEASE_TTL=2s"}, opts.Env...)
	if c.mongo != nil {
		if c.MongoProxy, err = c.proxies.Add("mongo", c.mongo.Addr()); err != nil {
			return err
		}
		c.MongoURI = "mongodb://" + c.MongoProxy.Addr() + "/pixelflow?directConnection=true"
		env = append(env, "MONGO_URI="+c.MongoURI)
	} else if opts.Durable {
		env = append(env, "DATA_DIR="+filepath.Join(c.dir, "data"))
	} else {
		env = append(env, "DATA_DIR=memory")
		c.Store = "embedded lungo memory store"
	}

	c.failpoints = opts.Failpoints
	c.API = c.process(opts.Bin, "api", "api", env)
	if !c.Topology.RelayInAPI {
		for i := range opts.Relays {
			c.Relays = append(c.Relays, c.process(opts.Bin, fmt.Sprintf("relay-%d", i+1), "relay", append(env, fmt.Sprintf("INSTANCE_ID=relay-%d", i+1))))
		}
	}
	for i := range opts.Gateways {
		name := fmt.Sprintf("gateway-%d", i+1)
		c.Gateways = append(c.Gateways, c.process(opts.Bin, name, "gateway", append(env, "INSTANCE_ID="+name, "API_URL="+c.API.InternalURL())))
	}
	for _, p := range c.Processes() {
		if err := p.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) process(bin, name, role string, env []string) *Process {
	port, err := redisproc.FreePort()
	if err != nil {
		port = 0 // Start then fails with a clear error
	}
	p := &Process{Name: name, Bin: bin, Role: role, Port: port, Env: append([]string(nil), env...), Log: filepath.Join(c.dir, name+".log"), ctr: c.ctr}
	if c.failpoints {
		p.FailpointFile = filepath.Join(c.dir, name+".failpoints")
	}
	return p
}

// RelayHosts are the processes a relay runs in: the api when the relay
// lives there (Topology.RelayInAPI), else every relay process. Stopping
// them all stops the pipeline (and the canaries the leader writes).
func (c *Cluster) RelayHosts() []*Process {
	if c.Topology.RelayInAPI {
		return []*Process{c.API}
	}
	return c.Relays
}

// Processes lists every pixelflow process: api, relays, gateways.
func (c *Cluster) Processes() []*Process {
	out := []*Process{c.API}
	out = append(out, c.Relays...)
	return append(out, c.Gateways...)
}

// Target is the cluster as traffic sees it.
func (c *Cluster) Target() Target {
	return Target{API: c.APIURL(), Gateways: c.GatewayURLs(), Describe: c.Provider + ", " + c.Store, MongoURI: c.MongoURI}
}

// APIURL is where POST /api/pixels and GET /api/canvas are served.
func (c *Cluster) APIURL() string { return c.API.URL() }

// GatewayURLs are the gateways' base URLs (each serves /ws, the page, and
// proxies /api/ to the api).
func (c *Cluster) GatewayURLs() []string {
	var out []string
	for _, g := range c.Gateways {
		out = append(out, g.URL())
	}
	return out
}

// ResetStore makes the store lose everything while Redis keeps its stream,
// as a restart of a memory store, a restore from an old backup or a
// rollback would: pixel versions start over. The api (and relays) are
// stopped, the data removed (the embedded file, or the MongoDB database
// dropped), and they start again.
func (c *Cluster) ResetStore(ctx context.Context) error {
	for _, p := range append([]*Process{c.API}, c.Relays...) {
		p.Kill()
	}
	switch {
	case c.MongoURI != "":
		cl, err := mongo.Connect(ctx, options.Client().ApplyURI(c.MongoURI))
		if err != nil {
			return fmt.Errorf("reset store: %w", err)
		}
		err = cl.Database("pixelflow").Drop(ctx)
		_ = cl.Disconnect(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("reset store: drop database: %w", err)
		}
	case c.durable:
		if err := os.RemoveAll(filepath.Join(c.dir, "data")); err != nil {
			return fmt.Errorf("reset store: %w", err)
		}
	}
	// A memory store is empty once its process is gone.
	for _, p := range append([]*Process{c.API}, c.Relays...) {
		if err := p.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// KillRedis crashes Redis; RestartRedis brings it back (empty when wipe)
// and points the proxy at it.
func (c *Cluster) KillRedis(ctx context.Context) error { return c.redis.Kill(ctx) }

// RestartRedis starts Redis again after KillRedis.
func (c *Cluster) RestartRedis(ctx context.Context, wipe bool) error {
	if err := c.redis.Start(ctx, wipe); err != nil {
		return err
	}
	if c.redis.Addr() != c.RedisProxy.Upstream() {
		return c.RedisProxy.Retarget(c.redis.Addr())
	}
	return nil
}

// Shape is what a cluster consists of, known before it starts: the fault
// catalogue of the nemesis is drawn from it, so a schedule can be
// generated (and written out) before the run.
type Shape struct {
	API      string
	Relays   []string // relay processes (MongoDB only)
	Gateways []string
	// LocalRedis: Redis is a redis-server child (it can be paused and its
	// AOF cut).
	LocalRedis bool
	// Mongo: the store is MongoDB behind a proxy (a link to cut).
	Mongo bool
	// Containers: the pixelflow processes and Redis are containers (the
	// docker provider): each can be disconnected from the network, and
	// Redis frozen.
	Containers bool
	// Redis is the replicated deployment Redis runs as (Options.Redis),
	// "" for one node: a Sentinel's or a cluster's faults are its
	// topology's own (a primary lost, a failover), not one node's.
	Redis redisurl.Mode
}

// PlanShape is the shape Launch will give a cluster with these options
// (the store as ChooseStore decides it).
func PlanShape(opts Options) (Shape, error) {
	if opts.Gateways == 0 {
		opts.Gateways = 2
	}
	if opts.Relays == 0 {
		opts.Relays = 2
	}
	store, _, err := ChooseStore(opts.Provider, opts.Store, os.Getenv, exec.LookPath, HasImage)
	if err != nil {
		return Shape{}, err
	}
	top := TopologyFor(store)
	sh := Shape{API: "api", LocalRedis: opts.Provider == Local && singleRedis(opts.Redis), Mongo: top.CanPartition(LinkMongo),
		Containers: opts.Provider == Docker && singleRedis(opts.Redis)}
	if !singleRedis(opts.Redis) {
		sh.Redis = opts.Redis
	}
	if !top.RelayInAPI {
		for i := range opts.Relays {
			sh.Relays = append(sh.Relays, fmt.Sprintf("relay-%d", i+1))
		}
	}
	for i := range opts.Gateways {
		sh.Gateways = append(sh.Gateways, fmt.Sprintf("gateway-%d", i+1))
	}
	return sh, nil
}

// Process returns the pixelflow process named name, or nil.
func (c *Cluster) Process(name string) *Process {
	for _, p := range c.Processes() {
		if p != nil && p.Name == name {
			return p
		}
	}
	return nil
}

// RedisPid is redis-server's pid, 0 when it is not a child process (a
// container) or not running.
func (c *Cluster) RedisPid() int {
	if r, ok := c.redis.(*localRedis); ok {
		return r.srv.Pid()
	}
	return 0
}

// StoreBytes is the size on disk of the embedded file store (its data
// directory); ok is false for the memory store and MongoDB.
func (c *Cluster) StoreBytes() (n int64, ok bool, err error) {
	if c.mongo != nil {
		return 0, false, nil
	}
	dir := filepath.Join(c.dir, "data")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, true, err
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !e.IsDir() {
			n += info.Size()
		}
	}
	return n, true, nil
}

// PauseRedis freezes redis-server (SIGSTOP); ResumeRedis continues it.
// Close resumes it too.
func (c *Cluster) PauseRedis() error { return c.redis.Pause() }

// ResumeRedis ends PauseRedis.
func (c *Cluster) ResumeRedis() error { return c.redis.Resume() }

// LoseRedisTail is Redis losing its newest writes, as a crash inside an
// appendfsync everysec window does: redis-server is killed (SIGKILL), its
// append-only file cut back until at least entries stream entries (XADDs)
// are gone, with every write after them, and it is restarted from what is
// left. It returns what was cut.
func (c *Cluster) LoseRedisTail(ctx context.Context, entries int) (redisaof.Cut, error) {
	cut, err := c.redis.LoseTail(ctx, entries)
	if err != nil {
		return cut, err
	}
	if c.redis.Addr() != c.RedisProxy.Upstream() {
		return cut, c.RedisProxy.Retarget(c.redis.Addr())
	}
	return cut, nil
}

// SlowRedisDisk makes every fsync of redis-server wait delay more (see
// package slowdisk) until the returned heal is called. A Redis restart
// meanwhile ends the fault (the new process has a fast disk).
func (c *Cluster) SlowRedisDisk(ctx context.Context, delay time.Duration) (heal func() error, err error) {
	return c.redis.SlowDisk(ctx, delay)
}

// CannotInject says which faults this cluster's provider cannot inject ("" when
// it can): "redis-tail-loss" and "redis-slow-disk" need a redis-server
// child; "container-disconnect" needs pixelflow in containers (docker).
func (c *Cluster) CannotInject(fault string) string {
	switch fault {
	case "container-disconnect":
		if c.ctr == nil {
			return "the " + c.Provider + " provider runs pixelflow as processes, not containers: disconnecting one from its network needs the docker provider"
		}
	case "redis-pause", "redis-tail-loss", "redis-slow-disk":
		if c.redis == nil {
			return "Redis runs as a replicated topology (" + string(c.Topology.Redis) + "): its faults are the topology's own (chaos/failover.go)"
		}
		if fault == "redis-pause" {
			return "" // a child's SIGSTOP, or a container's freezer
		}
		if _, ok := c.redis.(*localRedis); !ok {
			return "the " + c.Provider + " provider's Redis is a container: slowing its disk and cutting its AOF are only implemented for redis-server child processes (local provider)"
		}
	}
	return ""
}

// Close resumes anything paused, then stops every process (SIGTERM, then
// SIGKILL after 10 s), the proxies and the stores.
func (c *Cluster) Close() error {
	var errs []error
	if c.redis != nil {
		if err := c.redis.Resume(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.Processes() {
		if p != nil {
			if err := p.Resume(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range c.Processes() {
		if p == nil {
			continue
		}
		if err := p.Stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	c.proxies.Close()
	if c.redis != nil {
		c.redis.Close()
	}
	if c.mongo != nil {
		c.mongo.Close()
	}
	if c.ctr != nil {
		if err := c.ctr.close(context.Background()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Logs returns the last n lines of every process's log.
func (c *Cluster) Logs(n int) string {
	var b strings.Builder
	for _, p := range c.Processes() {
		if p != nil {
			fmt.Fprintf(&b, "--- %s log (%s), last lines:\n%s\n", p.Name, p.Log, p.Tail(n))
		}
	}
	return b.String()
}
