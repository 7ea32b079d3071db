// Package config reads pixelflow's settings from flags and the environment
// (a flag wins over its variable, which wins over the default) and validates
// them all before anything starts: a bad value stops the program with one
// line naming the setting.
package config

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/clientip"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/option"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/store"
)

// Config is the validated configuration of one pixelflow process.
type Config struct {
	Role string // serve, api, relay, gateway

	MongoURI string // empty: embedded store
	DataDir  string // embedded store file's directory; "" = memory
	RedisURL string // empty: serve starts a private redis-server
	// Redis is RedisURL parsed (mode and go-redis options); its Mode is ""
	// when RedisURL is empty.
	Redis redisurl.Target
	Addr  string // listen address, from HOST and PORT

	Canvas           string
	Width, Height    int
	RateLimit        float64
	RateBurst        int
	LeaseTTL         time.Duration
	MarkDelay        time.Duration // relay: how long the mark of an appended claim may wait to fold into the next claim; 0 marks at once
	WaitReplicas     int           // relay: Redis replicas that must acknowledge a claim's entries before the store marks them; 0 off
	WaitTimeout      time.Duration // relay: bound of each wait for those acknowledgements
	Retention        time.Duration
	StreamMaxLen     int64
	InstanceID       string
	AllowedOrigins   []string
	MaxConns         int
	GroupTTL         time.Duration // gateway: heartbeat silence after which another gateway reaps its group
	ClientQueue      int           // gateway: per-client queue bound
	CanaryInterval   time.Duration
	CanaryBound      time.Duration
	ClientSendBuffer int    // gateway: SO_SNDBUF per connection
	APIURL           string // gateway role: where /api/* is proxied
	APIAdminURL      string // gateway role: where the api's /api/health is read (default APIURL)
	LogLevel         string
	LogFormat        string // json or text
	ShutdownGrace    time.Duration

	TrustedProxies []netip.Prefix // whose X-Forwarded-For / Forwarded is believed

	// start tells this process start from every other one, whatever its
	// instance id and pid (see RelayOptions).
	start         string
	MaxConnsPerIP int // gateway: WebSocket connections per client address
	IdemKeys      int // Idempotency-Keys remembered per client

	// HTTP server timeouts, on every listener. WriteTimeout is not applied
	// to /ws (a session, not a request).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	AdminAddr string // "": /metrics, /ops, /api/health… on the public listener
	Pprof     bool   // serve /debug/pprof (on AdminAddr when set)
}

// Embedded reports whether the store is the embedded engine.
func (c Config) Embedded() bool { return c.MongoURI == "" }

// setting is one configurable value: its flag, its variable, the kind of
// value it takes and its default. The kind is what -h shows, and Parse
// holds each setting to it (parser.want), so the help cannot name a type
// the parser does not read.
type setting struct {
	flag, env, kind, def, help string
	val                        *string
	set                        bool
}

// The kinds of value a setting takes, as -h names them.
const (
	kindString   = "string"
	kindInt      = "int"
	kindFloat    = "float"
	kindDuration = "duration"
	kindBool     = "bool"
	kindList     = "list" // comma-separated
)

// Roles lists the roles that run a server (pixelflow's other subcommands,
// probe, version and help, are the command's own).
var Roles = []string{"serve", "api", "relay", "gateway"}

// FlagUsage describes every setting for -h: flag, kind, variable and
// default, then what it does. Defaults are the built-in ones, whatever the
// environment says; docs/configuration.md lists the same settings.
func FlagUsage(w io.Writer, role string) {
	_, settings := newFlagSet(nil)
	fmt.Fprintf(w, "usage: pixelflow %s [flags]\n\n", role)
	fmt.Fprintln(w, "Every flag can also be set by the environment variable named with it;")
	fmt.Fprintln(w, "a flag wins over its variable, which wins over the default.")
	fmt.Fprintln(w)
	for _, s := range settings {
		fmt.Fprintf(w, "  -%s %s (env %s", s.flag, s.kind, s.env)
		if s.def != "" {
			fmt.Fprintf(w, ", default %s", s.def)
		}
		fmt.Fprintf(w, ")\n    \t%s\n", s.help)
	}
}

// value is a setting as a flag.Value: every setting is kept as text and
// converted by Parse, which names the setting when the text is bad.
type value struct{ s *setting }

func (v value) String() string {
	if v.s == nil || v.s.val == nil {
		return ""
	}
	return *v.s.val
}

func (v value) Set(x string) error { *v.s.val = x; return nil }

// IsBoolFlag lets a bool setting's flag stand alone (-pprof for -pprof=true).
func (v value) IsBoolFlag() bool { return v.s.kind == kindBool }

func newFlagSet(getenv func(string) string) (*flag.FlagSet, []*setting) {
	host := sanitize(os.Hostname())
	settings := []*setting{
		{flag: "mongo-uri", env: "MONGO_URI", kind: kindString, help: "MongoDB replica set URI; empty runs the embedded store"},
		{flag: "data-dir", env: "DATA_DIR", kind: kindString, def: "data", help: "directory of the embedded store's file (and the private redis-server's data); \"memory\" keeps it in memory"},
		{flag: "redis-url", env: "REDIS_URL", kind: kindString, help: "Redis URL, rediss:// for TLS: one node redis://[user:pass@]host:port[/db]; " +
			"Sentinel redis://[suser:spass@]sentinel1:26379?master_name=NAME&addr=sentinel2:26379[&username=user&password=pass] " +
			"(the URL's user:pass is the Sentinels', username=/password= the primary's); " +
			"Cluster redis://[user:pass@]seed1:6379?addr=seed2:6379[&addr=...] (or one seed with cluster=true); " +
			"empty: serve/gateway start a private redis-server child"},
		{flag: "host", env: "HOST", kind: kindString, help: "listen host (empty: all interfaces)"},
		{flag: "port", env: "PORT", kind: kindInt, def: "8080", help: "listen port (0 picks a free one)"},
		{flag: "canvas", env: "CANVAS_NAME", kind: kindString, def: canvas.DefaultName, help: "canvas name (letters, digits, '.', - and _)"},
		{flag: "width", env: "CANVAS_WIDTH", kind: kindInt, help: "canvas width in pixels (default 1000 on MongoDB, 256 embedded)"},
		{flag: "height", env: "CANVAS_HEIGHT", kind: kindInt, help: "canvas height in pixels (default 1000 on MongoDB, 256 embedded)"},
		{flag: "rate-limit", env: "RATE_LIMIT", kind: kindFloat, def: "20", help: "pixels per second allowed per client IP; 0 disables"},
		{flag: "rate-burst", env: "RATE_BURST", kind: kindInt, def: "40", help: "burst of pixels allowed per client IP"},
		{flag: "lease-ttl", env: "LEASE_TTL", kind: kindDuration, def: relay.DefaultLeaseTTL.String(), help: "relay lease duration; a standby takes over within it"},
		{flag: "relay-mark-delay", env: "RELAY_MARK_DELAY", kind: kindDuration, def: relay.DefaultMarkDelay.String(), help: "how long the relay may defer marking a published batch, to mark it in the same store transaction as its next claim; 0 marks each batch at once"},
		{flag: "redis-wait-replicas", env: "REDIS_WAIT_REPLICAS", kind: kindInt, def: "0", help: "relay: Redis replicas that must acknowledge a batch's stream entries (WAIT) before the store marks it published, so a failover to such a replica needs no client resync; while fewer answer, marking and new batches wait and the outbox grows (nothing is lost); 0 marks after the primary alone"},
		{flag: "redis-wait-timeout", env: "REDIS_WAIT_TIMEOUT", kind: kindDuration, def: relay.DefaultWaitTimeout.String(), help: "relay: how long each wait for REDIS_WAIT_REPLICAS lasts before it is retried"},
		{flag: "retention", env: "RETENTION", kind: kindDuration, help: "how long published outbox events are kept (default 168h on MongoDB, 30s embedded: the embedded engine copies collections per write, so its outbox must stay small)"},
		{flag: "stream-maxlen", env: "STREAM_MAXLEN", kind: kindInt, def: "100000", help: "approximate bound on the Redis stream's length"},
		{flag: "instance-id", env: "INSTANCE_ID", kind: kindString, def: host, help: "stable id of this process (gateway consumer group, relay lease holder); default the host name"},
		{flag: "allowed-origins", env: "ALLOWED_ORIGINS", kind: kindList, help: "comma-separated Origins allowed on /ws; empty: same origin only; * allows any"},
		{flag: "group-ttl", env: "GROUP_TTL", kind: kindDuration, def: gateway.DefaultGroupTTL.String(), help: "gateway: how long a gateway may go without a heartbeat before another gateway destroys its consumer group (heartbeats every GROUP_TTL/4, at most 2s)"},
		{flag: "max-conns", env: "MAX_CONNS", kind: kindInt, def: strconv.Itoa(gateway.DefaultMaxConns), help: "WebSocket connections allowed per gateway"},
		{flag: "max-conns-per-ip", env: "MAX_CONNS_PER_IP", kind: kindInt, def: "50", help: "WebSocket connections allowed per client address (IPv6: per /64) on one gateway; past it 429"},
		{flag: "trusted-proxies", env: "TRUSTED_PROXIES", kind: kindList, def: "loopback,private", help: "comma-separated CIDRs of proxies whose X-Forwarded-For/Forwarded names the client (\"loopback\" and \"private\" name those ranges); none trusts no header"},
		{flag: "idempotency-keys", env: "IDEMPOTENCY_KEYS", kind: kindInt, def: "1024", help: "Idempotency-Keys remembered per client, rounded up to a multiple of 64 (so at least 64); its oldest are forgotten first; a restart with another value still finds the keys already held"},
		{flag: "http-read-header-timeout", env: "HTTP_READ_HEADER_TIMEOUT", kind: kindDuration, def: "5s", help: "time a client has to send a request's headers"},
		{flag: "http-read-timeout", env: "HTTP_READ_TIMEOUT", kind: kindDuration, def: "10s", help: "time a client has to send a whole request, body included"},
		{flag: "http-write-timeout", env: "HTTP_WRITE_TIMEOUT", kind: kindDuration, def: "30s", help: "time to answer a request, from the end of its headers (not /ws)"},
		{flag: "http-idle-timeout", env: "HTTP_IDLE_TIMEOUT", kind: kindDuration, def: "120s", help: "how long an idle keep-alive connection is kept"},
		{flag: "admin-addr", env: "ADMIN_ADDR", kind: kindString, help: "host:port of a second listener for /metrics, /ops, /ops/data, /api/health and /debug/pprof, which then leave the public port; empty: all on the public port"},
		{flag: "pprof", env: "PPROF", kind: kindBool, def: "false", help: "serve /debug/pprof on the public port when ADMIN_ADDR is unset (ADMIN_ADDR always serves it); 1/true or 0/false"},
		{flag: "client-queue", env: "CLIENT_QUEUE", kind: kindInt, def: strconv.Itoa(gateway.DefaultQueueLen), help: "events queued per WebSocket client before it counts as slow: its backlog is dropped and it is told to resync"},
		{flag: "client-send-buffer", env: "CLIENT_SEND_BUFFER", kind: kindInt, def: strconv.Itoa(gateway.DefaultSendBuffer), help: "kernel send buffer per WebSocket connection, bytes (bounds what a stalled client hides from the slow-client check)"},
		{flag: "canary-interval", env: "CANARY_INTERVAL", kind: kindDuration, def: relay.DefaultCanaryInterval.String(), help: "how often the leading relay sends a canary through the pipeline; 0 disables"},
		{flag: "canary-bound", env: "CANARY_BOUND", kind: kindDuration, def: "15s", help: "gateway /readyz fails when no canary arrived for this long; 0 disables"},
		{flag: "api-url", env: "API_URL", kind: kindString, help: "gateway role: base URL of an api process to proxy /api/* to"},
		{flag: "api-admin-url", env: "API_ADMIN_URL", kind: kindString, help: "gateway role: base URL where the api serves /api/health for the dashboard (its ADMIN_ADDR); default API_URL"},
		{flag: "log-level", env: "LOG_LEVEL", kind: kindString, def: "info", help: "debug, info, warn or error"},
		{flag: "log-format", env: "LOG_FORMAT", kind: kindString, def: "json", help: "json (one object per line, for collectors) or text (key=value lines, for a terminal)"},
		{flag: "shutdown-grace", env: "SHUTDOWN_GRACE", kind: kindDuration, def: "10s", help: "how long shutdown waits for requests and the batch in flight"},
	}
	fs := flag.NewFlagSet("pixelflow", flag.ContinueOnError)
	for _, s := range settings {
		s.val = new(string)
		*s.val = s.def
		if getenv != nil {
			if v, ok := lookup(getenv, s.env); ok {
				*s.val, s.set = v, true
			}
		}
		fs.Var(value{s}, s.flag, s.help+" [env "+s.env+"]")
	}
	return fs, settings
}

func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

// Parse reads args (the role first) and the environment through getenv.
func Parse(args []string, getenv func(string) string) (Config, error) {
	var c Config
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return c, fmt.Errorf("missing role: pixelflow <%s> [flags]", strings.Join(Roles, "|"))
	}
	c.Role = args[0]
	var nonce [4]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails (Go 1.24+)
	c.start = hex.EncodeToString(nonce[:])
	switch c.Role {
	case "serve", "api", "relay", "gateway":
	default:
		return c, fmt.Errorf("unknown role %q: want one of %s", c.Role, strings.Join(Roles, ", "))
	}
	fs, settings := newFlagSet(getenv)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("flags: %w (pixelflow %s -h lists them)", err, c.Role)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if s.flag == f.Name {
				s.set = true
			}
		}
	})
	get := map[string]*setting{}
	for _, s := range settings {
		get[s.env] = s
	}
	p := parser{get: get}
	c.MongoURI = p.str("MONGO_URI")
	if c.MongoURI != "" && !strings.HasPrefix(c.MongoURI, "mongodb://") && !strings.HasPrefix(c.MongoURI, "mongodb+srv://") {
		p.fail("MONGO_URI", c.MongoURI, "must start with mongodb:// or mongodb+srv://")
	}
	c.DataDir = p.str("DATA_DIR")
	if c.DataDir == "memory" {
		c.DataDir = ""
	}
	c.RedisURL = p.str("REDIS_URL")
	if c.RedisURL != "" {
		t, err := redisurl.Parse(c.RedisURL)
		if err != nil {
			shown := redisurl.Redact(c.RedisURL)
			if shown == "" {
				shown = "(not shown: it may hold a password)"
			}
			p.fail("REDIS_URL", shown, err.Error())
		}
		c.Redis = t
	}
	port := p.intRange("PORT", 0, 65535)
	c.Addr = p.str("HOST") + ":" + strconv.Itoa(port)
	c.Canvas = p.str("CANVAS_NAME")
	defSize := 1000
	if c.Embedded() {
		defSize = 256
	}
	c.Width = p.intDefault("CANVAS_WIDTH", defSize, 1, canvas.MaxSide)
	c.Height = p.intDefault("CANVAS_HEIGHT", defSize, 1, canvas.MaxSide)
	c.RateLimit = p.float("RATE_LIMIT")
	c.RateBurst = p.intRange("RATE_BURST", 1, 1_000_000)
	c.LeaseTTL = p.duration("LEASE_TTL", 500*time.Millisecond, time.Hour)
	c.MarkDelay = p.duration("RELAY_MARK_DELAY", 0, relay.MaxMarkDelay)
	c.WaitReplicas = p.intRange("REDIS_WAIT_REPLICAS", 0, 64)
	c.WaitTimeout = p.duration("REDIS_WAIT_TIMEOUT", time.Millisecond, relay.MaxWaitTimeout)
	if c.WaitReplicas > 0 && c.RedisURL == "" {
		p.fail("REDIS_WAIT_REPLICAS", strconv.Itoa(c.WaitReplicas), "needs REDIS_URL: the private redis-server started without it has no replicas, so no mark would ever be made")
	}
	defRet := store.DefaultRetention
	if c.Embedded() {
		defRet = store.EmbeddedRetention
	}
	c.Retention = p.durationDefault("RETENTION", defRet, time.Second, 365*24*time.Hour)
	c.StreamMaxLen = int64(p.intRange("STREAM_MAXLEN", 100, 1<<30))
	c.InstanceID = p.str("INSTANCE_ID")
	c.AllowedOrigins = p.list("ALLOWED_ORIGINS")
	c.MaxConns = p.intRange("MAX_CONNS", 1, 1_000_000)
	c.GroupTTL = p.duration("GROUP_TTL", time.Second, 24*time.Hour)
	c.MaxConnsPerIP = p.intRange("MAX_CONNS_PER_IP", 1, 1_000_000)
	c.TrustedProxies = p.trusted("TRUSTED_PROXIES")
	c.IdemKeys = p.intRange("IDEMPOTENCY_KEYS", 1, 1_000_000)
	c.ReadHeaderTimeout = p.duration("HTTP_READ_HEADER_TIMEOUT", 100*time.Millisecond, time.Hour)
	c.ReadTimeout = p.duration("HTTP_READ_TIMEOUT", 100*time.Millisecond, time.Hour)
	c.WriteTimeout = p.duration("HTTP_WRITE_TIMEOUT", 100*time.Millisecond, time.Hour)
	c.IdleTimeout = p.duration("HTTP_IDLE_TIMEOUT", 100*time.Millisecond, 24*time.Hour)
	if c.ReadTimeout < c.ReadHeaderTimeout {
		p.fail("HTTP_READ_TIMEOUT", c.ReadTimeout.String(), "must be at least HTTP_READ_HEADER_TIMEOUT (it covers the headers too)")
	}
	if a := p.str("ADMIN_ADDR"); a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.fail("ADMIN_ADDR", a, "must look like host:port or :port")
		}
		c.AdminAddr = a
	}
	c.Pprof = p.boolean("PPROF")
	c.ClientQueue = p.intRange("CLIENT_QUEUE", 1, 1_000_000)
	c.CanaryInterval = p.duration("CANARY_INTERVAL", 0, time.Hour)
	c.CanaryBound = p.duration("CANARY_BOUND", 0, 24*time.Hour)
	if c.CanaryBound > 0 && c.CanaryInterval > 0 && c.CanaryBound <= 2*c.CanaryInterval {
		p.fail("CANARY_BOUND", c.CanaryBound.String(), "must exceed twice CANARY_INTERVAL, or be 0")
	}
	c.ClientSendBuffer = p.intRange("CLIENT_SEND_BUFFER", 4096, 64<<20)
	c.APIURL = p.str("API_URL")
	if c.APIURL != "" {
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.fail("API_URL", c.APIURL, "must look like http://host:port")
		}
	}
	c.APIAdminURL = p.str("API_ADMIN_URL")
	if c.APIAdminURL != "" {
		if u, err := url.Parse(c.APIAdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.fail("API_ADMIN_URL", c.APIAdminURL, "must look like http://host:port")
		}
	} else {
		c.APIAdminURL = c.APIURL
	}
	c.LogLevel = p.str("LOG_LEVEL")
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.fail("LOG_LEVEL", c.LogLevel, "must be debug, info, warn or error")
	}
	c.LogFormat = p.str("LOG_FORMAT")
	switch c.LogFormat {
	case "json", "text":
	default:
		p.fail("LOG_FORMAT", c.LogFormat, "must be json or text")
	}
	c.ShutdownGrace = p.duration("SHUTDOWN_GRACE", 0, 10*time.Minute)
	p.allRead(settings)
	if p.err != nil {
		return c, p.err
	}
	if err := c.validateOptions(get); err != nil {
		return c, err
	}
	if c.Role == "relay" && c.Embedded() {
		return c, errors.New("MONGO_URI: the relay role needs MongoDB; the embedded store lives inside one process, so run `serve`, or `api` (which runs the relay with the embedded store)")
	}
	return c, nil
}

// sanitize turns a host name into a valid instance id (canvas.ValidateName).
func sanitize(host string, err error) string {
	if err != nil || host == "" {
		return "pixelflow"
	}
	b := []byte(host)
	for i, c := range b {
		if !canvas.IsNameRune(rune(c)) {
			b[i] = '-'
		}
	}
	return string(b[:min(len(b), canvas.MaxNameLen)])
}

// GatewayOptions are the gateway options this configuration sets; the
// caller adds the Redis client, logger, tracer and hooks.
func (c Config) GatewayOptions() gateway.Options {
	return gateway.Options{
		Size:           canvas.Size{Width: c.Width, Height: c.Height},
		Canvas:         c.Canvas,
		InstanceID:     c.InstanceID,
		AllowedOrigins: c.AllowedOrigins,
		MaxConns:       c.MaxConns,
		MaxConnsPerIP:  c.MaxConnsPerIP,
		TrustedProxies: c.TrustedProxies,
		GroupTTL:       c.GroupTTL,
		// Several heartbeats per GroupTTL, so one late beat is no death.
		HeartbeatInterval: min(2*time.Second, c.GroupTTL/4),
		QueueLen:          c.ClientQueue,
		SendBuffer:        c.ClientSendBuffer,
		CanaryBound:       c.CanaryBound,
	}
}

// StoreOptions are the store options this configuration sets; the caller
// adds the logger, tracer and engine tuning.
func (c Config) StoreOptions() store.Options {
	return store.Options{Canvas: c.Canvas, Retention: c.Retention, PruneOnPublish: c.Embedded(), IdempotencyKeysPerClient: c.IdemKeys}
}

// RelayOptions are the relay options this configuration sets; the caller
// adds the logger, tracer, canary and stream name.
//
// The lease holder is "<instance>-<pid>.<nonce>", the nonce drawn once per
// process start. The instance id and pid alone do not tell two starts
// apart: in a container the pid is usually 1 and a replacement often has
// its predecessor's hostname, so it would *renew* the predecessor's lease,
// with no new term, and a frozen predecessor that woke would not be
// fenced. Every start holds a term of its own.
func (c Config) RelayOptions() relay.Options {
	return relay.Options{
		Holder:          c.InstanceID + "-" + strconv.Itoa(os.Getpid()) + "." + c.start,
		LeaseTTL:        c.LeaseTTL,
		RepublishWindow: c.Retention,
		CanaryInterval:  c.CanaryInterval,
		MarkDelay:       cmp.Or(c.MarkDelay, relay.MarkAtOnce),
		WaitReplicas:    c.WaitReplicas,
		WaitTimeout:     c.WaitTimeout,
	}
}

// APIOptions are the API options this configuration sets; the caller adds
// the readiness checks, health, logger and tracer.
func (c Config) APIOptions() api.Options {
	return api.Options{Size: canvas.Size{Width: c.Width, Height: c.Height}, RateLimit: c.RateLimit, Burst: c.RateBurst, TrustedProxies: c.TrustedProxies}
}

// optionSettings names the setting behind each component option, so a
// refusal by a component's Validate names what the user set.
var optionSettings = map[string]string{
	"gateway.Canvas": "CANVAS_NAME", "store.Canvas": "CANVAS_NAME",
	"gateway.InstanceID": "INSTANCE_ID", "relay.Holder": "INSTANCE_ID",
	"gateway.AllowedOrigins": "ALLOWED_ORIGINS",
	"gateway.MaxConns":       "MAX_CONNS",
	"gateway.MaxConnsPerIP":  "MAX_CONNS_PER_IP",
	"gateway.GroupTTL":       "GROUP_TTL",
	"gateway.QueueLen":       "CLIENT_QUEUE",
	"gateway.SendBuffer":     "CLIENT_SEND_BUFFER",
	"gateway.CanaryBound":    "CANARY_BOUND",
	"store.Retention":        "RETENTION",
	"relay.LeaseTTL":         "LEASE_TTL",
	"relay.MarkDelay":        "RELAY_MARK_DELAY",
	"relay.WaitReplicas":     "REDIS_WAIT_REPLICAS",
	"relay.WaitTimeout":      "REDIS_WAIT_TIMEOUT",
	"relay.CanaryInterval":   "CANARY_INTERVAL",
	"api.Width":              "CANVAS_WIDTH",
	"api.Height":             "CANVAS_HEIGHT",
	"api.RateLimit":          "RATE_LIMIT",
	"api.Burst":              "RATE_BURST",
}

// validateOptions holds every component's options to its own Validate, so
// that a value a component would refuse stops the program here, with one
// line naming the setting, before any store or Redis is opened.
func (c Config) validateOptions(get map[string]*setting) error {
	for _, err := range []error{
		c.StoreOptions().Validate(),
		c.RelayOptions().Validate(),
		c.GatewayOptions().Validate(),
		c.APIOptions().Validate(),
	} {
		if err == nil {
			continue
		}
		var oe *option.Error
		if !errors.As(err, &oe) {
			return fmt.Errorf("settings: %w", err)
		}
		env, ok := optionSettings[oe.Component+"."+oe.Field]
		if !ok {
			return fmt.Errorf("settings: %w", err)
		}
		s := get[env]
		return fmt.Errorf("invalid %s (-%s) %q: %s", env, s.flag, strings.TrimSpace(*s.val), oe.Reason)
	}
	return nil
}

// parser converts settings, keeping the first error. Each conversion
// first checks that the setting is declared of the kind it converts
// (want), so a kind -h shows is the kind Parse reads.
type parser struct {
	get  map[string]*setting
	read map[string]bool
	err  error
}

func (p *parser) fail(env, val, why string) {
	if p.err == nil {
		s := p.get[env]
		p.err = fmt.Errorf("invalid %s (-%s) %q: %s", env, s.flag, val, why)
	}
}

// want records that env is read as kind, and refuses a setting declared
// as another kind: a program error, caught by any Parse.
func (p *parser) want(env, kind string) {
	if p.read == nil {
		p.read = map[string]bool{}
	}
	p.read[env] = true
	if s := p.get[env]; s.kind != kind && p.err == nil {
		p.err = fmt.Errorf("internal: setting %s is declared %s but read as %s", env, s.kind, kind)
	}
}

// allRead refuses settings that Parse never read: a flag -h lists must do
// something.
func (p *parser) allRead(settings []*setting) {
	for _, s := range settings {
		if !p.read[s.env] && p.err == nil {
			p.err = fmt.Errorf("internal: setting %s is never read", s.env)
		}
	}
}

// raw is a setting's text, trimmed.
func (p *parser) raw(env string) string { return strings.TrimSpace(*p.get[env].val) }

func (p *parser) str(env string) string {
	p.want(env, kindString)
	return p.raw(env)
}

func (p *parser) intRange(env string, lo, hi int) int {
	p.want(env, kindInt)
	v := p.raw(env)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(env, v, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
	}
	return n
}

func (p *parser) intDefault(env string, def, lo, hi int) int {
	p.want(env, kindInt)
	if p.raw(env) == "" {
		return def
	}
	return p.intRange(env, lo, hi)
}

func (p *parser) boolean(env string) bool {
	p.want(env, kindBool)
	switch v := p.raw(env); strings.ToLower(v) {
	case "0", "false", "":
		return false
	case "1", "true":
		return true
	default:
		p.fail(env, v, "must be 1/true or 0/false")
		return false
	}
}

// list splits a comma-separated setting, dropping empty items.
func (p *parser) list(env string) []string {
	p.want(env, kindList)
	var out []string
	for _, s := range strings.Split(p.raw(env), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// trusted reads a TRUSTED_PROXIES list; "loopback" and "private" stand
// for those ranges.
func (p *parser) trusted(env string) []netip.Prefix {
	p.want(env, kindList)
	v := p.raw(env)
	var parts []string
	for _, part := range strings.Split(v, ",") {
		switch strings.ToLower(strings.TrimSpace(part)) {
		case "loopback":
			parts = append(parts, "127.0.0.0/8", "::1/128")
		case "private":
			parts = append(parts, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
		default:
			parts = append(parts, part)
		}
	}
	out, err := clientip.ParseTrusted(strings.Join(parts, ","))
	if err != nil {
		p.fail(env, v, "must be comma-separated CIDRs (or loopback, private), or none: "+err.Error())
	}
	return out
}

func (p *parser) float(env string) float64 {
	p.want(env, kindFloat)
	v := p.raw(env)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e9 {
		p.fail(env, v, "must be a number >= 0")
	}
	return f
}

func (p *parser) duration(env string, lo, hi time.Duration) time.Duration {
	p.want(env, kindDuration)
	v := p.raw(env)
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		p.fail(env, v, fmt.Sprintf("must be a duration from %s to %s (e.g. 5s)", lo, hi))
	}
	return d
}

func (p *parser) durationDefault(env string, def, lo, hi time.Duration) time.Duration {
	p.want(env, kindDuration)
	if p.raw(env) == "" {
		return def
	}
	return p.duration(env, lo, hi)
}
