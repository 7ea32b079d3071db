package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/buildinfo"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/config"
	"github.com/pixelflow/pixelflow/internal/dirlock"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/ops"
	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/stream"
	"github.com/pixelflow/pixelflow/internal/telemetry"
	"github.com/pixelflow/pixelflow/internal/web"
)

// Main is the program: parse flags, Run, Close. Tests run it in-process on
// port 0 with a memory store.
type Main struct {
	Config config.Config
	Logger *slog.Logger
	getenv func(string) string // the environment Config came from (OTEL_* are read from it)
	// Build is the binary's identity (buildinfo.Read), in the startup line
	// and the pixelflow_build_info gauge.
	Build buildinfo.Info

	// Addr is the address the HTTP server listens on, set by Run.
	Addr string
	// AdminAddr is the admin listener's address (ADMIN_ADDR), set by Run
	// when there is one.
	AdminAddr string
	// LogOutput receives the log (default os.Stderr; LOG_FORMAT says
	// JSON or text); set before ParseFlags.
	LogOutput io.Writer

	dirLock  *dirlock.Lock // held while this process uses DATA_DIR
	store    *store.Store
	redis    redis.UniversalClient // one node, Sentinel or Cluster (REDIS_URL)
	stream   *stream.Stream        // this canvas's stream, when there is a Redis
	redisSrv *redisproc.Server
	relay    *relay.Relay
	gateway  *gateway.Gateway
	servers  []*http.Server // public first, then admin
	tel      *telemetry.Telemetry
	// failpoint is the store's and the relay's test hook: nil unless the
	// binary was built with -tags failpoints and armed (failpoints_on.go).
	failpoint func(string) error
	// testFailpoint, set by this package's tests before Run, replaces
	// failpoint: a test that must hold a hit (not only fail or stall it)
	// runs in any build.
	testFailpoint func(string) error

	cancelWorkers context.CancelFunc
	workers       sync.WaitGroup

	listener net.Listener // the public one
	// served is closed when a listener stopped serving (Close, or a
	// failure); serving counts the Serve goroutines; serveErrs holds why
	// a listener stopped when it was not Close.
	served     chan struct{}
	servedOnce sync.Once
	serving    sync.WaitGroup
	serveMu    sync.Mutex
	serveErrs  []error
}

// NewMain returns a Main with a JSON logger on stderr.
func NewMain() *Main {
	return &Main{Logger: telemetry.NewLogger(os.Stderr, slog.LevelInfo, telemetry.JSONLogs), LogOutput: os.Stderr, Build: buildinfo.Read()}
}

// groupCommit bounds the placements per store transaction, on both stores:
// the embedded engine runs one write transaction at a time, and on MongoDB
// concurrent transactions on one tile document conflict (see
// store.Options.GroupCommit).
const groupCommit = 64

// embeddedRelayLinger is the relay's pause between batches under load on the
// embedded store, whose one-at-a-time write transactions it shares with the
// API: it bounds what it adds to an event's latency.
const embeddedRelayLinger = 5 * time.Millisecond

// ParseFlags reads the role, flags and environment.
func (m *Main) ParseFlags(args []string, getenv func(string) string) error {
	c, err := config.Parse(args, getenv)
	if err != nil {
		return err
	}
	m.Config, m.getenv = c, getenv
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	out := m.LogOutput
	if out == nil {
		out = os.Stderr
	}
	m.Logger = telemetry.NewLogger(out, lvl, telemetry.LogFormat(c.LogFormat)).With("role", c.Role, "instance", c.InstanceID)
	return nil
}

func (m *Main) has(role string) bool {
	switch m.Config.Role {
	case "serve":
		return true
	case "api":
		// The embedded store lives in this process, so its relay must too.
		return role == "api" || (role == "relay" && m.Config.Embedded())
	}
	return m.Config.Role == role
}

// Run starts the roles and returns once the server listens. Close stops them.
func (m *Main) Run(ctx context.Context) error {
	c := m.Config
	m.Logger.Info("starting", "version", m.Build.Version, "revision", m.Build.RevisionLabel(), "goversion", m.Build.GoVersion)
	tel, err := telemetry.New(ctx, telemetry.Options{Service: "pixelflow-" + c.Role, Instance: c.InstanceID, Getenv: m.getenv})
	if err != nil {
		return err
	}
	m.tel = tel
	getenv := m.getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if m.failpoint, err = failpoints(getenv); err != nil {
		return err
	}
	if m.testFailpoint != nil {
		m.failpoint = m.testFailpoint
	}
	var tracer trace.TracerProvider // nil keeps the components' tracing off
	if tel.Enabled {
		tracer = tel.Tracer
		m.Logger.Info("tracing on", "exporter", m.getenv("OTEL_TRACES_EXPORTER"), "endpoint", m.getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	}
	// Without REDIS_URL the relay and gateway need a private redis-server:
	// say so before the store is opened (or created) in DATA_DIR.
	if c.RedisURL == "" && (m.has("relay") || m.has("gateway")) {
		if err := redisproc.Installed(); err != nil {
			return fmt.Errorf("REDIS_URL is not set and a private redis-server cannot start: %w", err)
		}
	}
	if m.has("api") || m.has("relay") {
		if err := m.openStore(ctx); err != nil {
			return err
		}
	}
	// The api role reads the stream's tail (snapshot cache keys) when it
	// is given a Redis; it never starts a private one for that.
	if m.has("relay") || m.has("gateway") || (m.has("api") && c.RedisURL != "") {
		if err := m.openRedis(ctx); err != nil {
			return err
		}
		m.stream = stream.New(m.redis, c.Canvas, c.StreamMaxLen)
	}
	// /api/health: a section from each component this process runs.
	health := &ops.Health{Role: c.Role, Instance: c.InstanceID}
	if m.store != nil {
		health.Outbox = m.store
		health.Store = map[bool]string{true: "embedded", false: "mongodb"}[c.Embedded()]
	}
	// public serves the canvas, /ws, /api and probes; admin the operator's
	// pages. Without ADMIN_ADDR they are one.
	public := http.NewServeMux()
	admin := public
	if c.AdminAddr != "" {
		admin = http.NewServeMux()
	}
	workerCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancelWorkers = cancel
	var ready []api.Check
	if m.store != nil {
		ready = append(ready, api.Check{Name: "store", Fn: func(ctx context.Context) error {
			if err := m.store.Ping(ctx); err != nil {
				return &api.CheckError{Code: "unreachable", Err: err}
			}
			return nil
		}})
	}
	// An api alone uses Redis only for its snapshot cache: writes go on
	// while Redis is away, so it stays ready.
	if m.redis != nil && (m.has("relay") || m.has("gateway")) {
		// A write, not a PING: a replica or a slot without a primary
		// answers PING. The code names the state (read_only,
		// cluster_down, unknown_master, …: stream.Condition).
		ready = append(ready, api.Check{Name: "redis", Fn: func(ctx context.Context) error {
			if err := m.stream.Probe(ctx); err != nil {
				return &api.CheckError{Code: stream.Condition(err), Err: err}
			}
			return nil
		}})
	}
	if m.has("gateway") {
		gopts := c.GatewayOptions()
		gopts.Redis, gopts.Logger, gopts.Tracer, gopts.Propagator = m.redis, m.Logger, tracer, tel.Propagator
		gopts.Failpoint = m.failpoint
		latency := &ops.Window{}
		gopts.OnBroadcast = latency.Add
		g, err := gateway.New(gopts)
		if err != nil {
			return err
		}
		m.gateway = g
		health.Gateway = g
		dash := &ops.Dashboard{Instance: c.InstanceID, Gateway: g, Board: m.stream, Latency: latency,
			Health: health, APIAdminURL: c.APIAdminURL, Logger: m.Logger}
		m.goWorker(func() error { return g.Run(workerCtx) })
		public.Handle("/ws", g)
		page := web.Handler()
		public.Handle("GET /{$}", page)
		public.Handle("GET /app.js", page)
		public.Handle("GET /wire.js", page) // app.js imports it
		admin.Handle("GET /ops", page)
		admin.Handle("GET /ops.js", page)
		admin.Handle("GET /ops/data", dash)
		m.goWorker(func() error { return dash.Publish(workerCtx) })
		ready = append(ready, api.Check{Name: "gateway", Fn: func(context.Context) error {
			if s := g.Stats(); !s.Ready {
				return &api.CheckError{Code: "not_consuming", Err: fmt.Errorf("gateway not consuming: %s", s.LastError)}
			}
			return nil
		}}, api.Check{Name: "canary", Fn: func(ctx context.Context) error {
			if err := g.CanaryCheck(ctx); err != nil {
				return &api.CheckError{Code: "stale", Err: err}
			}
			return nil
		}})
	}
	if m.has("relay") {
		ropts := c.RelayOptions()
		ropts.Logger, ropts.Tracer, ropts.Propagator = m.Logger, tracer, tel.Propagator
		ropts.Destination = m.stream.Keys().Stream
		ropts.Failpoint = m.failpoint
		if c.CanaryInterval > 0 {
			s := m.store
			ropts.Canary = func(ctx context.Context) error { _, err := s.Canary(ctx, store.Trace{}); return err }
		}
		if c.Embedded() {
			ropts.Linger = embeddedRelayLinger
		}
		if m.gateway != nil {
			// The gateway beside it broadcasts what the relay numbered
			// without waiting for the XADD and its own read of the stream.
			ropts.Numbered = m.gateway.Offer
		}
		r, err := relay.New(m.store, m.stream, ropts)
		if err != nil {
			return err
		}
		m.relay = r
		health.Relay = r
		m.goWorker(func() error { return r.Run(workerCtx) })
	}
	if m.has("api") {
		aopts := c.APIOptions()
		if m.redis != nil && m.store != nil {
			aopts.SnapshotKey = snapshotKey(m.store, m.stream, m.gateway)
		}
		aopts.Ready, aopts.Logger, aopts.Tracer, aopts.Propagator = ready, m.Logger, tel.Tracer, tel.Propagator
		a, err := api.New(m.store, aopts)
		if err != nil {
			return err
		}
		public.Handle("/", a)
	} else {
		public.Handle("/", api.NewHealth(ready, m.Logger))
		if c.APIURL != "" {
			// Only the API's own endpoints: the api's /api/health is the
			// operator's, on its admin listener or not.
			proxy, err := api.NewProxy(api.ProxyOptions{Target: c.APIURL, ResponseTimeout: c.WriteTimeout, Logger: m.Logger})
			if err != nil {
				return fmt.Errorf("API_URL %s: %w", c.APIURL, err)
			}
			public.Handle("/api/pixels", proxy)
			public.Handle("/api/canvas", proxy)
		}
	}
	if admin != public {
		admin.Handle("/", api.NewHealth(ready, m.Logger))
	}
	admin.Handle("GET /api/health", api.HealthHandler(health.Report))
	// The build, and each component's series, read from it at scrape time.
	tel.Registry.MustRegister(m.Build.Collector())
	if m.store != nil {
		tel.Registry.MustRegister(m.store.Collector())
	}
	if m.relay != nil {
		tel.Registry.MustRegister(m.relay.Collector())
	}
	if m.stream != nil {
		tel.Registry.MustRegister(m.stream.Collector())
	}
	if m.gateway != nil {
		tel.Registry.MustRegister(m.gateway.Collector())
	}
	admin.Handle("GET /metrics", promhttp.HandlerFor(tel.Registry, promhttp.HandlerOpts{}))
	if c.AdminAddr != "" || c.Pprof {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	instrumented := telemetry.InstrumentHTTP(tel.Registry, m.Logger, public)
	if err := m.listen("public", c.Addr, instrumented, &m.Addr); err != nil {
		return err
	}
	if admin != public {
		if err := m.listen("admin", c.AdminAddr, admin, &m.AdminAddr); err != nil {
			return err
		}
	}
	return nil
}

func (m *Main) goWorker(run func() error) {
	m.workers.Add(1)
	go func() {
		defer m.workers.Done()
		if err := run(); err != nil && !errors.Is(err, context.Canceled) {
			m.Logger.Error("worker stopped", "err", err)
		}
	}()
}

func (m *Main) openStore(ctx context.Context) error {
	c := m.Config
	path := ""
	if c.Embedded() && c.DataDir != "" {
		if err := m.lockDataDir(); err != nil {
			return err
		}
		path = filepath.Join(c.DataDir, "pixelflow.lungo")
	}
	opts := c.StoreOptions()
	opts.Logger, opts.Failpoint = m.Logger, m.failpoint
	if m.tel != nil && m.tel.Enabled {
		opts.Tracer = m.tel.Tracer
	}
	opts.GroupCommit = groupCommit
	s, err := store.Open(ctx, c.MongoURI, path, opts)
	if err != nil {
		return err
	}
	m.store = s
	kind := "MongoDB " + redactURI(c.MongoURI)
	if c.Embedded() {
		kind = "embedded (lungo) " + map[bool]string{true: "file " + path, false: "memory"}[path != ""]
	}
	m.Logger.Info("store opened", "store", kind)
	return nil
}

// lockDataDir takes DATA_DIR for this process (once, whichever of the
// embedded store and the private Redis uses it first). A second process on
// the same directory would open its own copy of the store file and
// acknowledge writes the first one then overwrites, so it must not start.
func (m *Main) lockDataDir() error {
	if m.dirLock != nil {
		return nil
	}
	dir := m.Config.DataDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("DATA_DIR %q: %w", dir, err)
	}
	l, err := dirlock.Acquire(dir)
	if err != nil {
		var le *dirlock.LockedError
		if errors.As(err, &le) {
			pid := "unknown pid"
			if le.Pid > 0 {
				pid = fmt.Sprintf("pid %d", le.Pid)
			}
			return fmt.Errorf("DATA_DIR %q is in use by another pixelflow process (%s, lock file %s): stop it or give this one its own DATA_DIR", dir, pid, le.Path)
		}
		return fmt.Errorf("DATA_DIR %q: %w", dir, err)
	}
	m.dirLock = l
	return nil
}

func (m *Main) openRedis(ctx context.Context) error {
	c := m.Config
	target := c.Redis // REDIS_URL, validated by config.Parse
	if c.RedisURL == "" {
		dir := filepath.Join(c.DataDir, "redis")
		if c.DataDir != "" {
			if err := m.lockDataDir(); err != nil {
				return err
			}
		} else {
			d, err := os.MkdirTemp("", "pixelflow-redis-")
			if err != nil {
				return fmt.Errorf("redis temp dir: %w", err)
			}
			dir = d
		}
		// With DATA_DIR=memory the directory is the server's own, removed
		// when it stops.
		srv, err := redisproc.Start(ctx, redisproc.Options{Dir: dir, AppendOnly: c.DataDir != "", Temporary: c.DataDir == ""})
		if err != nil {
			return fmt.Errorf("REDIS_URL is not set and a private redis-server could not start: %w", err)
		}
		m.redisSrv = srv
		if pid := srv.Leftover(); pid != 0 {
			m.Logger.Warn("stopped a redis-server left behind on DATA_DIR before starting a new one", "pid", pid, "dir", dir)
		}
		m.Logger.Info("started private redis-server", "addr", srv.Addr(), "pid", srv.Pid(), "dir", dir)
		if target, err = redisurl.Parse(srv.URL()); err != nil {
			return fmt.Errorf("private redis-server's URL: %w", err)
		}
	}
	m.redis = target.Client()
	m.Logger.Info("redis", "mode", string(target.Mode), "addrs", target.Addrs())
	return nil
}

// listen serves h on addr with the configured timeouts (every listener
// has them: a slow client cannot hold a connection by trickling its
// request) and stores the bound address in *bound.
func (m *Main) listen(name, addr string, h http.Handler, bound *string) error {
	c := m.Config
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if name == "admin" {
			return fmt.Errorf("listen on %s (ADMIN_ADDR): %w", addr, err)
		}
		return fmt.Errorf("listen on %s (PORT/HOST): %w", addr, err)
	}
	addr = ln.Addr().String()
	*bound = addr
	if name == "public" {
		m.listener = ln
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout, // /ws lifts its own (gateway.ServeHTTP)
		IdleTimeout:       c.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
	}
	m.servers = append(m.servers, srv)
	if m.served == nil {
		m.served = make(chan struct{})
	}
	m.serving.Add(1)
	go func() {
		defer m.serving.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			// Serving stopped on its own, after Run returned: the process
			// no longer answers there. Say so now; Done and Close report it.
			m.serveMu.Lock()
			m.serveErrs = append(m.serveErrs, fmt.Errorf("http server on %s stopped: %w", addr, err))
			m.serveMu.Unlock()
			m.Logger.Error("http server stopped serving", "listener", name, "addr", addr, "err", err)
		}
		m.servedOnce.Do(func() { close(m.served) })
	}()
	m.Logger.Info("listening", "listener", name, "addr", addr, "url", "http://"+displayAddr(addr))
	return nil
}

// Done is closed when the HTTP server stops serving: after Close, or on its
// own when serving failed (Close then returns why). nil before Run listened.
func (m *Main) Done() <-chan struct{} { return m.served }

// Close shuts down in order: stop taking requests, finish the relay's batch
// in flight and release its lease, close WebSockets, then Redis and the
// store. Its error includes a failure of the HTTP server after Run. Its
// last log line says that shutdown finished and what it left: an operator
// reading the log of a stopped process knows it stopped cleanly (or why
// not) and whether events wait in the outbox for the next relay.
func (m *Main) Close() error {
	started := time.Now()
	grace := m.Config.ShutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), max(grace, time.Second))
	defer cancel()
	var errs []error
	var drained []any
	if m.gateway != nil {
		drained = append(drained, "websockets_closed", m.gateway.Stats().Clients)
		m.gateway.Close()
	}
	for _, srv := range m.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	stopped := make(chan struct{})
	go func() { m.serving.Wait(); close(stopped) }()
	select {
	case <-stopped:
		m.serveMu.Lock()
		errs = append(errs, m.serveErrs...)
		m.serveMu.Unlock()
	case <-ctx.Done():
		errs = append(errs, errors.New("http server did not stop within SHUTDOWN_GRACE"))
	}
	if m.cancelWorkers != nil {
		m.cancelWorkers()
	}
	done := make(chan struct{})
	go func() { m.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("workers did not stop within SHUTDOWN_GRACE"))
	}
	if m.relay != nil {
		st := m.relay.Status()
		drained = append(drained, "relay_published", st.Published, "relay_position", canvas.Position{Epoch: st.Epoch, Seq: st.Seq}.String())
	}
	if m.store != nil {
		// What the next relay will publish (0: everything acknowledged
		// reached the stream).
		if n, _, err := m.store.Backlog(ctx); err == nil {
			drained = append(drained, "outbox_pending", n)
		}
	}
	if m.redis != nil {
		_ = m.redis.Close()
	}
	if m.store != nil {
		if err := m.store.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	if m.redisSrv != nil {
		if err := m.redisSrv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.dirLock != nil { // last: the store file and Redis's files are closed
		if err := m.dirLock.Release(); err != nil {
			errs = append(errs, fmt.Errorf("release DATA_DIR lock: %w", err))
		}
		m.dirLock = nil
	}
	if m.tel != nil {
		if err := m.tel.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	drained = append(drained, "took", time.Since(started))
	if err != nil {
		m.Logger.Error("shutdown finished with errors", append(drained, "err", err)...)
	} else {
		m.Logger.Info("shutdown complete", drained...)
	}
	return err
}

func redactURI(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URI)"
	}
	if p.User != nil {
		p.User = url.User(p.User.Username())
	}
	return p.String()
}

func displayAddr(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + port
}

// snapshotKey is the api's SnapshotKey (api.TailKey) on stream s and store
// st; gw is the gateway in this process, nil when there is none.
//
// The key's second part is the last number the sequencer handed out (the
// open claim's last), not only the marked position: a relay hands its
// claim to the gateway beside it before the XADD, so that gateway's
// clients hold positions past the stream's tail, and their snapshot
// requests may reach an api in another process, whose own gateway (if
// any) is not ahead. Keyed by the tail and the marked position alone
// (issue 28 item 3.3), that api answered such a client with a build from
// before the offered write, or a 304 for it.
func snapshotKey(st *store.Store, s *stream.Stream, gw *gateway.Gateway) func(ctx context.Context) (string, error) {
	tail := s.Tail
	if gw != nil {
		// Its clients can be ahead of the tail (Offer).
		tail = gw.HandedOut
	}
	return api.TailKey(tail, func(ctx context.Context) (canvas.Position, error) {
		s, err := st.Sequencer(ctx)
		return canvas.Position{Epoch: s.Epoch, Seq: s.Numbered}, err
	})
}
