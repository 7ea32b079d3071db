package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
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
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/config"
	"github.com/pixelflow/pixelflow/internal/dirlock"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/redisproc"
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

	// Addr is the address the HTTP server listens on, set by Run.
	Addr string

	dirLock  *dirlock.Lock // held while this process uses DATA_DIR
	store    *store.Store
	redis    *redis.Client
	redisSrv *redisproc.Server
	relay    *relay.Relay
	gateway  *gateway.Gateway
	server   *http.Server
	tel      *telemetry.Telemetry
	latency  latencyWindow // commit → broadcast, for /ops
	// failpoint is the store's and the relay's test hook: nil unless the
	// binary was built with -tags failpoints and armed (failpoints_on.go).
	failpoint func(string) error

	cancelWorkers context.CancelFunc
	workers       sync.WaitGroup

	listener net.Listener
	// served is closed when the HTTP server stopped serving; serveErr is
	// why, when it was not Close (read after served is closed).
	served   chan struct{}
	serveErr error
}

// NewMain returns a Main with a JSON logger on stderr.
func NewMain() *Main {
	return &Main{Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
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
	m.Logger = slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))).With("role", c.Role, "instance", c.InstanceID)
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
	var tracer trace.TracerProvider // nil keeps the components' tracing off
	if tel.Enabled {
		tracer = tel.Tracer
		m.Logger.Info("tracing on", "exporter", m.getenv("OTEL_TRACES_EXPORTER"), "endpoint", m.getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	}
	if m.has("api") || m.has("relay") {
		if err := m.openStore(ctx); err != nil {
			return err
		}
	}
	if m.has("relay") || m.has("gateway") {
		if err := m.openRedis(ctx); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	workerCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancelWorkers = cancel
	var ready []api.Check
	if m.store != nil {
		ready = append(ready, api.Check{Name: "store", Fn: m.store.Ping})
	}
	if m.redis != nil {
		ready = append(ready, api.Check{Name: "redis", Fn: func(ctx context.Context) error {
			if err := m.redis.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		}})
	}
	if m.has("relay") {
		st := stream.New(m.redis, c.Canvas, c.StreamMaxLen)
		ropts := c.RelayOptions()
		ropts.Logger, ropts.Tracer, ropts.Propagator = m.Logger, tracer, tel.Propagator
		ropts.Destination = st.Keys().Stream
		ropts.Failpoint = m.failpoint
		if c.CanaryInterval > 0 {
			s := m.store
			ropts.Canary = func(ctx context.Context) error { _, err := s.Canary(ctx, store.Trace{}); return err }
		}
		if c.Embedded() {
			ropts.Linger = embeddedRelayLinger
		}
		r, err := relay.New(m.store, st, ropts)
		if err != nil {
			return err
		}
		m.relay = r
		m.goWorker(func() error { return r.Run(workerCtx) })
	}
	if m.has("gateway") {
		gopts := c.GatewayOptions()
		gopts.Redis, gopts.Logger, gopts.Tracer, gopts.Propagator = m.redis, m.Logger, tracer, tel.Propagator
		gopts.OnBroadcast = m.onBroadcast(commitToBroadcast(tel.Registry))
		g, err := gateway.New(gopts)
		if err != nil {
			return err
		}
		m.gateway = g
		m.goWorker(func() error { return g.Run(workerCtx) })
		mux.Handle("/ws", g)
		page := web.Handler()
		mux.Handle("GET /{$}", page)
		mux.Handle("GET /app.js", page)
		mux.Handle("GET /ops", page)
		mux.Handle("GET /ops.js", page)
		mux.HandleFunc("GET /ops/data", m.handleOpsData)
		m.goWorker(func() error { return m.publishFigures(workerCtx) })
		ready = append(ready, api.Check{Name: "gateway", Fn: func(context.Context) error {
			if s := g.Stats(); !s.Ready {
				return fmt.Errorf("gateway not consuming: %s", s.LastError)
			}
			return nil
		}}, api.Check{Name: "canary", Fn: g.CanaryCheck})
	}
	var handler http.Handler
	if m.has("api") {
		aopts := c.APIOptions()
		aopts.Ready, aopts.Health, aopts.Logger, aopts.Tracer, aopts.Propagator = ready, m.health, m.Logger, tel.Tracer, tel.Propagator
		a, err := api.New(m.store, aopts)
		if err != nil {
			return err
		}
		handler = a
	} else {
		handler = api.NewHealth(ready, m.health)
		if c.APIURL != "" {
			u, _ := url.Parse(c.APIURL)
			proxy := httputil.NewSingleHostReverseProxy(u)
			mux.Handle("/api/", proxy)
		}
	}
	mux.Handle("/", handler)
	m.registerMetrics(tel.Registry)
	mux.Handle("GET /metrics", promhttp.HandlerFor(tel.Registry, promhttp.HandlerOpts{}))
	return m.listen(instrumentHTTP(tel.Registry, mux))
}

// onBroadcast feeds both the Prometheus histogram and the dashboard's window.
func (m *Main) onBroadcast(observe func(time.Duration)) func(time.Duration) {
	return func(d time.Duration) {
		observe(d)
		m.latency.add(d)
	}
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
	u := c.RedisURL
	if u == "" {
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
		srv, err := redisproc.Start(ctx, redisproc.Options{Dir: dir, AppendOnly: c.DataDir != ""})
		if err != nil {
			return fmt.Errorf("REDIS_URL is not set and a private redis-server could not start: %w", err)
		}
		m.redisSrv = srv
		u = srv.URL()
		m.Logger.Info("started private redis-server", "addr", srv.Addr(), "pid", srv.Pid(), "dir", dir)
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 3*time.Second, 3*time.Second
	m.redis = redis.NewClient(opt)
	return nil
}

func (m *Main) listen(h http.Handler) error {
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (PORT/HOST): %w", m.Config.Addr, err)
	}
	m.Addr = ln.Addr().String()
	m.listener = ln
	m.server = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	m.served = make(chan struct{})
	go func() {
		defer close(m.served)
		if err := m.server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			// Serving stopped on its own, after Run returned: the process
			// no longer answers. Say so now; Done and Close report it.
			m.serveErr = fmt.Errorf("http server on %s stopped: %w", m.Addr, err)
			m.Logger.Error("http server stopped serving", "addr", m.Addr, "err", err)
		}
	}()
	m.Logger.Info("listening", "addr", m.Addr, "url", "http://"+displayAddr(m.Addr))
	return nil
}

// Done is closed when the HTTP server stops serving: after Close, or on its
// own when serving failed (Close then returns why). nil before Run listened.
func (m *Main) Done() <-chan struct{} { return m.served }

// Close shuts down in order: stop taking requests, finish the relay's batch
// in flight and release its lease, close WebSockets, then Redis and the
// store. Its error includes a failure of the HTTP server after Run.
func (m *Main) Close() error {
	grace := m.Config.ShutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), max(grace, time.Second))
	defer cancel()
	var errs []error
	if m.gateway != nil {
		m.gateway.Close()
	}
	if m.server != nil {
		if err := m.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		select {
		case <-m.served:
			if m.serveErr != nil {
				errs = append(errs, m.serveErr)
			}
		case <-ctx.Done():
			errs = append(errs, errors.New("http server did not stop within SHUTDOWN_GRACE"))
		}
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
	if m.redis != nil {
		_ = m.redis.Close()
	}
	if m.store != nil {
		if err := m.store.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	if m.redisSrv != nil {
		m.redisSrv.Kill()
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
	return errors.Join(errs...)
}

// health is /api/health: each worker's status.
func (m *Main) health(ctx context.Context) map[string]any {
	out := map[string]any{"role": m.Config.Role, "instance": m.Config.InstanceID}
	if m.store != nil {
		ob := map[string]any{}
		if n, oldest, err := m.store.Backlog(ctx); err != nil {
			ob["error"] = canvas.ErrorMessage(err)
		} else {
			ob["backlog"] = n
			if !oldest.IsZero() {
				ob["oldestPendingAgeSeconds"] = time.Since(oldest).Seconds()
			}
		}
		if seq, err := m.store.Sequencer(ctx); err == nil {
			ob["leaseHolder"], ob["epoch"], ob["seq"] = seq.Holder, seq.Epoch, seq.Seq
		}
		ob["txnRetries"] = m.store.Retries()
		out["outbox"] = ob
		out["store"] = map[bool]string{true: "embedded", false: "mongodb"}[m.Config.Embedded()]
	}
	if m.relay != nil {
		out["relay"] = m.relay.Status()
	}
	if m.gateway != nil {
		out["gateway"] = m.gateway.Stats()
	}
	return out
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
