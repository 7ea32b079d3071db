package config

import (
	"errors"
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
		{[]string{"RATE_LIMIT", "-1"}, nil, `invalid RATE_LIMIT (-rate-limit) "-1"`},
		{[]string{"PORT", "abc"}, nil, `invalid PORT (-port) "abc": must be an integer from 0 to 65535`},
		{[]string{"MONGO_URI", "http://x"}, nil, `invalid MONGO_URI (-mongo-uri) "http://x"`},
		{[]string{"REDIS_URL", "localhost:6379"}, nil, `invalid REDIS_URL (-redis-url) "localhost:6379": must start with redis:// or rediss://`},
		{[]string{"REDIS_URL", "redis://u:s3cret@h:1?master_name=m&cluster=true"}, nil, `invalid REDIS_URL (-redis-url) "redis://u:xxxxx@h:1?master_name=m&cluster=true": master_name (Sentinel) and cluster= contradict`},
		{[]string{"REDIS_URL", "redis://h:1/2?addr=h:2"}, nil, `invalid REDIS_URL (-redis-url) "redis://h:1/2?addr=h:2": database "2" on Redis Cluster`},
		{[]string{"REDIS_URL", "redis://u:s3cret@h:1%zz"}, nil, `invalid REDIS_URL (-redis-url) "(not shown: it may hold a password)": not a URL`},
		{[]string{"CANARY_INTERVAL", "10s", "CANARY_BOUND", "15s"}, nil, `invalid CANARY_BOUND (-canary-bound) "15s": must exceed twice CANARY_INTERVAL`},
		{[]string{"LOG_LEVEL", "loud"}, nil, `invalid LOG_LEVEL (-log-level) "loud"`},
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
