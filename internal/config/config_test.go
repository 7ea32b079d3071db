package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/store"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestRefusals: every bad value stops Parse with one line that names the
// setting (variable and flag) and the value, whichever layer owns the
// rule: the components' own Validate rules (CLIENT_QUEUE=1 is the
// gateway's) are applied here, before any store or Redis is opened.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string // a fragment of the one-line error
	}{
		{[]string{"CLIENT_QUEUE", "1"}, nil, `invalid CLIENT_QUEUE (-client-queue) "1": must be at least 2`},
		{nil, []string{"-client-queue", "1"}, `invalid CLIENT_QUEUE (-client-queue) "1": must be at least 2`},
		{[]string{"CLIENT_QUEUE", "0"}, nil, `invalid CLIENT_QUEUE (-client-queue) "0"`},
		{[]string{"CANVAS_NAME", "a b"}, nil, `invalid CANVAS_NAME (-canvas) "a b": must be 1..64 letters`},
		{[]string{"CANVAS_NAME", "x{y}"}, nil, `invalid CANVAS_NAME (-canvas) "x{y}"`},
		{[]string{"INSTANCE_ID", "gw/1"}, nil, `invalid INSTANCE_ID (-instance-id) "gw/1": must be 1..64 letters`},
		{[]string{"INSTANCE_ID", strings.Repeat("x", 65)}, nil, `invalid INSTANCE_ID (-instance-id)`},
		{[]string{"ALLOWED_ORIGINS", "https://ok.example, nope"}, nil, `invalid ALLOWED_ORIGINS (-allowed-origins) "https://ok.example, nope": each origin must look like http://host[:port] or be *`},
		{[]string{"CANVAS_WIDTH", "5000"}, nil, `invalid CANVAS_WIDTH (-width) "5000"`},
		{[]string{"RETENTION", "500ms"}, nil, `invalid RETENTION (-retention) "500ms"`},
		{[]string{"LEASE_TTL", "1ms"}, nil, `invalid LEASE_TTL (-lease-ttl) "1ms"`},
		{[]string{"RELAY_MARK_DELAY", "2s"}, nil, `invalid RELAY_MARK_DELAY (-relay-mark-delay) "2s": must be a duration from 0s to 1s`},
		{[]string{"RELAY_MARK_DELAY", "-1ms"}, nil, `invalid RELAY_MARK_DELAY (-relay-mark-delay) "-1ms"`},
		{[]string{"REDIS_URL", "redis://h:1", "REDIS_WAIT_REPLICAS", "-1"}, nil, `invalid REDIS_WAIT_REPLICAS (-redis-wait-replicas) "-1": must be an integer from 0 to 64`},
		{[]string{"REDIS_URL", "redis://h:1", "REDIS_WAIT_TIMEOUT", "5s"}, nil, `invalid REDIS_WAIT_TIMEOUT (-redis-wait-timeout) "5s": must be a duration from 1ms to 2s`},
		{[]string{"REDIS_URL", "redis://h:1", "REDIS_WAIT_TIMEOUT", "0s"}, nil, `invalid REDIS_WAIT_TIMEOUT (-redis-wait-timeout) "0s"`},
		{[]string{"REDIS_WAIT_REPLICAS", "1"}, nil, `invalid REDIS_WAIT_REPLICAS (-redis-wait-replicas) "1": needs REDIS_URL`},
		{[]string{"RATE_LIMIT", "-1"}, nil, `invalid RATE_LIMIT (-rate-limit) "-1"`},
		{[]string{"PORT", "abc"}, nil, `invalid PORT (-port) "abc": must be an integer from 0 to 65535`},
		{[]string{"MONGO_URI", "http://x"}, nil, `invalid MONGO_URI (-mongo-uri) "http://x"`},
		{[]string{"REDIS_URL", "localhost:6379"}, nil, `invalid REDIS_URL (-redis-url) "localhost:6379": must start with redis:// or rediss://`},
		{[]string{"REDIS_URL", "redis://u:s3cret@h:1?master_name=m&cluster=true"}, nil, `invalid REDIS_URL (-redis-url) "redis://u:xxxxx@h:1?master_name=m&cluster=true": master_name (Sentinel) and cluster= contradict`},
		{[]string{"REDIS_URL", "redis://h:1/2?addr=h:2"}, nil, `invalid REDIS_URL (-redis-url) "redis://h:1/2?addr=h:2": database "2" on Redis Cluster`},
		{[]string{"REDIS_URL", "redis://u:s3cret@h:1%zz"}, nil, `invalid REDIS_URL (-redis-url) "(not shown: it may hold a password)": not a URL`},
		{[]string{"CANARY_INTERVAL", "10s", "CANARY_BOUND", "15s"}, nil, `invalid CANARY_BOUND (-canary-bound) "15s": must exceed twice CANARY_INTERVAL`},
		{[]string{"LOG_LEVEL", "loud"}, nil, `invalid LOG_LEVEL (-log-level) "loud"`},
		{[]string{"LOG_FORMAT", "xml"}, nil, `invalid LOG_FORMAT (-log-format) "xml": must be json or text`},
		{nil, []string{"-log-format", "JSON"}, `invalid LOG_FORMAT (-log-format) "JSON"`},
	} {
		args := append([]string{"serve"}, tc.args...)
		_, err := Parse(args, env(tc.env...))
		if err == nil {
			t.Errorf("%v %v: accepted", tc.env, tc.args)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") {
			t.Errorf("%v %v:\n got %q\nwant one line containing %q", tc.env, tc.args, msg, tc.want)
		}
	}
}

// TestRedisURLModes: every role reads REDIS_URL into the same parsed
// target, whose mode is the URL's (the forms themselves are redisurl's
// tests).
func TestRedisURLModes(t *testing.T) {
	for url, mode := range map[string]redisurl.Mode{
		"":                               "",
		"rediss://u:p@h:6380/1":          redisurl.Single,
		"redis://s1:26379?master_name=m": redisurl.Sentinel,
		"redis://n1:7000?addr=n2:7000":   redisurl.Cluster,
		"redis://n1:7000?cluster=true":   redisurl.Cluster,
	} {
		for _, role := range Roles {
			c, err := Parse([]string{role}, env("REDIS_URL", url, "MONGO_URI", "mongodb://db/?replicaSet=rs0"))
			if err != nil {
				t.Fatalf("%s with REDIS_URL %q: %v", role, url, err)
			}
			if c.Redis.Mode != mode || c.RedisURL != url {
				t.Errorf("%s with REDIS_URL %q: mode %q, want %q", role, url, c.Redis.Mode, mode)
			}
		}
	}
}

func TestRoleRefusals(t *testing.T) {
	for _, args := range [][]string{nil, {"-port", "1"}, {"bogus"}, {"serve", "extra"}} {
		if _, err := Parse(args, env()); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := Parse([]string{"relay"}, env()); err == nil || !strings.Contains(err.Error(), "MONGO_URI") {
		t.Errorf("relay on the embedded store: %v, want a MONGO_URI refusal", err)
	}
}

// TestDefaultsComeFromTheComponents: one default per setting, the
// component's, and the defaults pass every component's Validate.
func TestDefaultsComeFromTheComponents(t *testing.T) {
	c, err := Parse([]string{"serve"}, env("INSTANCE_ID", "gw-1.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"CANVAS_NAME", c.Canvas, canvas.DefaultName},
		{"MAX_CONNS", c.MaxConns, gateway.DefaultMaxConns},
		{"CLIENT_QUEUE", c.ClientQueue, gateway.DefaultQueueLen},
		{"CLIENT_SEND_BUFFER", c.ClientSendBuffer, gateway.DefaultSendBuffer},
		{"LEASE_TTL", c.LeaseTTL, relay.DefaultLeaseTTL},
		{"CANARY_INTERVAL", c.CanaryInterval, relay.DefaultCanaryInterval},
		{"RELAY_MARK_DELAY", c.RelayOptions().MarkDelay, relay.DefaultMarkDelay},
		{"REDIS_WAIT_REPLICAS", c.RelayOptions().WaitReplicas, 0},
		{"REDIS_WAIT_TIMEOUT", c.RelayOptions().WaitTimeout, relay.DefaultWaitTimeout},
		{"RETENTION (embedded)", c.Retention, store.EmbeddedRetention},
		{"INSTANCE_ID", c.InstanceID, "gw-1.example"},
	} {
		if f.got != f.want {
			t.Errorf("%s default %v, want %v", f.name, f.got, f.want)
		}
	}
	m, err := Parse([]string{"api"}, env("MONGO_URI", "mongodb://db/?replicaSet=rs0"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Retention != store.DefaultRetention || m.Width != 1000 {
		t.Errorf("on MongoDB: retention %s width %d, want %s and 1000", m.Retention, m.Width, store.DefaultRetention)
	}
	for name, err := range map[string]error{
		"gateway": c.GatewayOptions().Validate(), "store": c.StoreOptions().Validate(),
		"relay": c.RelayOptions().Validate(), "api": c.APIOptions().Validate(),
	} {
		if err != nil {
			t.Errorf("default %s options refused: %v", name, err)
		}
	}
}

// TestSanitizedHostIsAName: whatever the host name, the default instance
// id passes the one name rule (canvas.ValidateName).
func TestSanitizedHostIsAName(t *testing.T) {
	for _, host := range []string{"web-1", "web-1.example.com", "ünïcode", "a b:c/d{e}", strings.Repeat("h", 100), ""} {
		id := sanitize(host, nil)
		if err := canvas.ValidateName(id); err != nil {
			t.Errorf("host %q → %q: %v", host, id, err)
		}
	}
	if got := sanitize("x", errors.New("no host name")); got != "pixelflow" {
		t.Errorf("no host name → %q", got)
	}
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	c, err := Parse([]string{"serve", "-client-queue", "64"}, env("CLIENT_QUEUE", "128", "LEASE_TTL", "2s"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientQueue != 64 || c.LeaseTTL != 2*time.Second {
		t.Errorf("queue %d lease %s, want 64 (flag) and 2s (env)", c.ClientQueue, c.LeaseTTL)
	}
}

// TestMarkDelayZeroMarksAtOnce: RELAY_MARK_DELAY=0 turns the deferred mark
// off (the relay's MarkAtOnce), not back to the relay's default.
func TestMarkDelayZeroMarksAtOnce(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": relay.MarkAtOnce, "0s": relay.MarkAtOnce, "20ms": 20 * time.Millisecond, "1s": time.Second} {
		c, err := Parse([]string{"serve"}, env("RELAY_MARK_DELAY", v))
		if err != nil {
			t.Fatalf("RELAY_MARK_DELAY=%s: %v", v, err)
		}
		if got := c.RelayOptions().MarkDelay; got != want {
			t.Errorf("RELAY_MARK_DELAY=%s: relay MarkDelay %s, want %s", v, got, want)
		}
		if err := c.RelayOptions().Validate(); err != nil {
			t.Errorf("RELAY_MARK_DELAY=%s: %v", v, err)
		}
	}
}

// TestEveryStartHoldsALeaseOfItsOwn: two starts with the same instance id
// in the same process (as a container's replacement is: pid 1, its
// predecessor's hostname) get different lease holders, so the second
// cannot renew the first's lease and must win a term of its own.
func TestEveryStartHoldsALeaseOfItsOwn(t *testing.T) {
	get := env("INSTANCE_ID", "relay-0", "DATA_DIR", "memory")
	a, err := Parse([]string{"serve"}, get)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]string{"serve"}, get)
	if err != nil {
		t.Fatal(err)
	}
	ha, hb := a.RelayOptions().Holder, b.RelayOptions().Holder
	if ha == hb {
		t.Errorf("two starts of INSTANCE_ID=relay-0 in one process share the lease holder %q", ha)
	}
	if a.RelayOptions().Holder != ha {
		t.Errorf("one start's holder changed between calls: %q then %q", ha, a.RelayOptions().Holder)
	}
	for _, h := range []string{ha, hb} {
		if got := store.HolderInstance(h); got != "relay-0" {
			t.Errorf("HolderInstance(%q) = %q, want relay-0", h, got)
		}
	}
}

// TestFlagUsageShowsKindsAndDefaults: -h names each flag's kind, its
// variable and its built-in default (not the environment's), one entry
// per setting.
func TestFlagUsageShowsKindsAndDefaults(t *testing.T) {
	var b strings.Builder
	FlagUsage(&b, "serve")
	out := b.String()
	for _, want := range []string{
		"usage: pixelflow serve [flags]\n",
		"  -port int (env PORT, default 8080)\n",
		"  -lease-ttl duration (env LEASE_TTL, default " + relay.DefaultLeaseTTL.String() + ")\n",
		"  -rate-limit float (env RATE_LIMIT, default 20)\n",
		"  -pprof bool (env PPROF, default false)\n",
		"  -trusted-proxies list (env TRUSTED_PROXIES, default loopback,private)\n",
		"  -mongo-uri string (env MONGO_URI)\n",
		"  -retention duration (env RETENTION)\n",
		"  -max-conns int (env MAX_CONNS, default " + itoa(gateway.DefaultMaxConns) + ")\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
	_, settings := newFlagSet(nil)
	if n := strings.Count(out, " (env "); n != len(settings) {
		t.Errorf("usage lists %d settings, want %d", n, len(settings))
	}
	for _, s := range settings {
		switch s.kind {
		case kindString, kindInt, kindFloat, kindDuration, kindBool, kindList:
		default:
			t.Errorf("%s: kind %q", s.env, s.kind)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestKindIsWhatParseReads: a setting read as another kind than it is
// declared (what -h shows) stops Parse, and so does a setting never read;
// the default Parse in TestDefaultsComeFromTheComponents therefore proves
// every declared kind.
func TestKindIsWhatParseReads(t *testing.T) {
	p := parser{get: map[string]*setting{"X": {flag: "x", env: "X", kind: kindInt, val: new(string)}}}
	p.duration("X", 0, time.Hour)
	if p.err == nil || !strings.Contains(p.err.Error(), "X is declared int but read as duration") {
		t.Errorf("a duration read of an int setting: %v", p.err)
	}
	p = parser{get: p.get}
	p.allRead([]*setting{p.get["X"]})
	if p.err == nil || !strings.Contains(p.err.Error(), "X is never read") {
		t.Errorf("a setting never read: %v", p.err)
	}
	if _, err := Parse([]string{"serve"}, env()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// TestBoolFlagStandsAlone: -pprof alone turns it on, as a Go bool flag
// does; PPROF takes 1/true and 0/false and nothing else.
func TestBoolFlagStandsAlone(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want bool
	}{
		{[]string{"-pprof"}, nil, true},
		{[]string{"-pprof=false"}, []string{"PPROF", "1"}, false},
		{nil, []string{"PPROF", "true"}, true},
		{nil, []string{"PPROF", "0"}, false},
		{nil, nil, false},
	} {
		c, err := Parse(append([]string{"serve"}, tc.args...), env(tc.env...))
		if err != nil || c.Pprof != tc.want {
			t.Errorf("%v %v: pprof %v, %v; want %v", tc.args, tc.env, c.Pprof, err, tc.want)
		}
	}
	if _, err := Parse([]string{"serve"}, env("PPROF", "yes")); err == nil || !strings.Contains(err.Error(), `invalid PPROF (-pprof) "yes"`) {
		t.Errorf("PPROF=yes: %v", err)
	}
}
