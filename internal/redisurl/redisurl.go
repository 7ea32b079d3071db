// Package redisurl turns REDIS_URL into a go-redis client: one node, a
// Sentinel-managed primary or a Redis Cluster, each with TLS and ACL
// credentials. The parsing is go-redis's own (ParseURL, ParseFailoverURL,
// ParseClusterURL); this package only picks which of them applies, refuses
// combinations that parser would accept but pixelflow cannot use, and
// fills in pixelflow's timeouts.
//
// The forms (scheme redis:// or rediss:// for TLS, in every mode):
//
//	redis://[user:pass@]host:port[/db]                      one node
//	redis://[suser:spass@]s1:26379[/db]?master_name=NAME&addr=s2:26379&addr=s3:26379
//	        [&username=user&password=pass]                 Sentinel
//	redis://[user:pass@]seed1:6379?addr=seed2:6379[&addr=…]  Cluster
//	redis://[user:pass@]seed1:6379?cluster=true              Cluster, one seed
//
// The mode is chosen like go-redis's NewUniversalClient does:
//
//   - master_name present: Sentinel. The host and every addr are Sentinels;
//     the URL's user and password authenticate to the Sentinels, the
//     username= and password= parameters to the primary (go-redis's split:
//     a Sentinel and its primary may have different ACLs).
//   - otherwise at least one addr, or cluster=true: Cluster. The host and
//     every addr are seed nodes; the rest of the cluster is discovered.
//   - otherwise: one node.
//
// Refused, with a reason that names the parameter: a scheme other than
// redis/rediss, no host, an empty master_name, master_name with cluster=,
// cluster=false with addr, a database other than 0 on Cluster (Cluster has
// only database 0), and the parameters that route commands to replicas
// (replica_only, read_only, route_by_latency, route_randomly): pixelflow's
// scripts, XREADGROUP and XACK write, and its readers must see the
// primary's writes at once. Every other go-redis parameter (pool_size,
// max_retries, client_name, skip_verify…) passes through; an unknown one is
// go-redis's error. skip_verify, which go-redis's cluster parser lacks,
// works the same on Cluster as elsewhere.
//
// Timeouts: dial 2s, read and write 3s unless the URL sets dial_timeout,
// read_timeout or write_timeout (the gateway's blocking reads are shorter
// than the read timeout; see gateway's consumer).
//
// On Cluster the client re-reads the slot map every ClusterReload while it
// is used, not go-redis's 60s: go-redis re-reads it early only on MOVED or
// READONLY, which a dead primary never answers, so after a SIGKILL the
// client would dial the dead node for a minute after its replica took over.
package redisurl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how a URL reaches Redis.
type Mode string

// The modes.
const (
	Single   Mode = "single"
	Sentinel Mode = "sentinel"
	Cluster  Mode = "cluster"
)

// Default timeouts, applied unless the URL sets its own.
const (
	DialTimeout  = 2 * time.Second
	ReadTimeout  = 3 * time.Second
	WriteTimeout = 3 * time.Second
	// ClusterReload is how stale a cluster client's slot map may grow.
	ClusterReload = time.Second
)

// Target is a parsed URL: its mode and the go-redis options of that mode
// (exactly one of Single, Failover and Cluster is set).
type Target struct {
	Mode     Mode
	Single   *redis.Options
	Failover *redis.FailoverOptions
	Cluster  *redis.ClusterOptions
}

// parameters pixelflow refuses in a mode: they send commands to replicas.
var replicaRouting = map[Mode][]string{
	Sentinel: {"replica_only", "route_by_latency", "route_randomly"},
	Cluster:  {"read_only", "route_by_latency", "route_randomly"},
}

// Parse reads raw. Its errors are one line that never repeats the URL
// (it may hold a password): the caller names the setting, and shows
// Redact(raw).
func Parse(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Target{}, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return Target{}, errors.New("must start with redis:// or rediss:// (TLS)")
	}
	if u.Hostname() == "" {
		return Target{}, errors.New("names no host: want redis://host:port")
	}
	q := u.Query()
	mode, err := pick(q)
	if err != nil {
		return Target{}, err
	}
	for _, p := range replicaRouting[mode] {
		if q.Has(p) {
			return Target{}, fmt.Errorf("%s is refused: pixelflow reads and writes the primary only (its scripts, XREADGROUP and XACK write)", p)
		}
	}
	t := Target{Mode: mode}
	switch mode {
	case Sentinel:
		if t.Failover, err = redis.ParseFailoverURL(raw); err != nil {
			return Target{}, clean(err)
		}
		setTimeouts(q, &t.Failover.DialTimeout, &t.Failover.ReadTimeout, &t.Failover.WriteTimeout)
	case Cluster:
		if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
			return Target{}, fmt.Errorf("database %q on Redis Cluster: Cluster has only database 0", db)
		}
		// go-redis's cluster parser knows neither our marker nor
		// skip_verify: take them out and apply skip_verify here.
		skip, hasSkip := q.Get("skip_verify"), q.Has("skip_verify")
		q.Del("cluster")
		q.Del("skip_verify")
		c := *u
		c.Path, c.RawQuery = "", q.Encode()
		if t.Cluster, err = redis.ParseClusterURL(c.String()); err != nil {
			return Target{}, clean(err)
		}
		if hasSkip {
			v, err := strconv.ParseBool(skip)
			if err != nil {
				return Target{}, fmt.Errorf("skip_verify=%q: want true or false", skip)
			}
			if t.Cluster.TLSConfig == nil {
				return Target{}, errors.New("skip_verify needs rediss:// (TLS)")
			}
			t.Cluster.TLSConfig.InsecureSkipVerify = v
		}
		if t.Cluster.TLSConfig != nil && t.Cluster.TLSConfig.MinVersion == 0 {
			t.Cluster.TLSConfig.MinVersion = tls.VersionTLS12 // as go-redis's other parsers
		}
		setTimeouts(q, &t.Cluster.DialTimeout, &t.Cluster.ReadTimeout, &t.Cluster.WriteTimeout)
		t.Cluster.ClusterStateReloadInterval = ClusterReload
	default:
		q.Del("cluster") // cluster=false: said explicitly, means one node
		c := *u
		c.RawQuery = q.Encode()
		if t.Single, err = redis.ParseURL(c.String()); err != nil {
			return Target{}, clean(err)
		}
		setTimeouts(q, &t.Single.DialTimeout, &t.Single.ReadTimeout, &t.Single.WriteTimeout)
	}
	return t, nil
}

// pick chooses the mode from the query, refusing contradictions.
func pick(q url.Values) (Mode, error) {
	var cluster, clusterSet bool
	if q.Has("cluster") {
		v, err := strconv.ParseBool(q.Get("cluster"))
		if err != nil {
			return "", fmt.Errorf("cluster=%q: want true or false", q.Get("cluster"))
		}
		cluster, clusterSet = v, true
	}
	switch {
	case q.Has("master_name"):
		if q.Get("master_name") == "" {
			return "", errors.New("master_name is empty: name the primary Sentinel monitors")
		}
		if clusterSet {
			return "", errors.New("master_name (Sentinel) and cluster= contradict each other: give one")
		}
		return Sentinel, nil
	case clusterSet && !cluster && q.Has("addr"):
		return "", errors.New("cluster=false with addr=: several addresses without master_name mean Cluster")
	case cluster || q.Has("addr"):
		return Cluster, nil
	}
	return Single, nil
}

// setTimeouts fills in the default timeouts the URL did not set.
func setTimeouts(q url.Values, dial, read, write *time.Duration) {
	for _, d := range []struct {
		param string
		p     *time.Duration
		def   time.Duration
	}{{"dial_timeout", dial, DialTimeout}, {"read_timeout", read, ReadTimeout}, {"write_timeout", write, WriteTimeout}} {
		if !q.Has(d.param) {
			*d.p = d.def
		}
	}
}

// clean drops go-redis's "redis: " prefix: the caller names the setting.
func clean(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "redis: "))
}

// Client makes the target's client. Each call makes a new one, from a
// copy of the options (go-redis's constructors write to them).
func (t Target) Client() redis.UniversalClient {
	switch t.Mode {
	case Sentinel:
		o := *t.Failover
		return redis.NewFailoverClient(&o)
	case Cluster:
		o := *t.Cluster
		return redis.NewClusterClient(&o)
	}
	o := *t.Single
	return redis.NewClient(&o)
}

// Addrs are the addresses the client starts from: the node, the
// Sentinels or the cluster's seeds. For logs: they hold no credentials.
func (t Target) Addrs() []string {
	switch t.Mode {
	case Sentinel:
		return t.Failover.SentinelAddrs
	case Cluster:
		return t.Cluster.Addrs
	case Single:
		return []string{t.Single.Addr}
	}
	return nil
}

// Redact is raw with its passwords (userinfo and the password parameter)
// replaced by "xxxxx", fit for an error or a log; "" when raw does not
// parse as a URL.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	q := u.Query()
	if q.Has("password") { // Sentinel's primary password
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
