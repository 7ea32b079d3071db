package redisurl_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// TestForms: every documented form parses to its mode, with the
// addresses, credentials, database, TLS and timeouts the URL says, and
// makes that mode's client.
func TestForms(t *testing.T) {
	type want struct {
		mode           redisurl.Mode
		addrs          []string
		user, pass     string // the data node's ACL credentials
		suser, spass   string // Sentinel's
		master         string
		db             int
		tls            string // ServerName; "" no TLS
		skipVerify     bool
		dial, read, wr time.Duration
	}
	def := func(w want) want {
		if w.dial == 0 {
			w.dial = redisurl.DialTimeout
		}
		if w.read == 0 {
			w.read = redisurl.ReadTimeout
		}
		if w.wr == 0 {
			w.wr = redisurl.WriteTimeout
		}
		return w
	}
	for _, tc := range []struct {
		url  string
		want want
	}{
		{"redis://127.0.0.1:6379", want{mode: redisurl.Single, addrs: []string{"127.0.0.1:6379"}}},
		{"redis://cache.example", want{mode: redisurl.Single, addrs: []string{"cache.example:6379"}}},
		{"rediss://alice:s3cret@cache.example:6380/2", want{mode: redisurl.Single, addrs: []string{"cache.example:6380"},
			user: "alice", pass: "s3cret", db: 2, tls: "cache.example"}},
		{"rediss://:s3cret@cache.example:6380?skip_verify=true", want{mode: redisurl.Single, addrs: []string{"cache.example:6380"},
			pass: "s3cret", tls: "cache.example", skipVerify: true}},
		{"redis://h:1?read_timeout=10s&dial_timeout=1", want{mode: redisurl.Single, addrs: []string{"h:1"}, read: 10 * time.Second, dial: time.Second}},
		{"redis://h:1?cluster=false", want{mode: redisurl.Single, addrs: []string{"h:1"}}},
		{"redis://s1:26379?master_name=mymaster&addr=s2:26379&addr=s3:26379", want{mode: redisurl.Sentinel,
			addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, master: "mymaster"}},
		{"rediss://sent:spw@s1:26379/1?master_name=m&addr=s2:26379&username=app&password=apw", want{mode: redisurl.Sentinel,
			addrs: []string{"s1:26379", "s2:26379"}, master: "m", suser: "sent", spass: "spw", user: "app", pass: "apw", db: 1, tls: "s1"}},
		{"redis://n1:7000?addr=n2:7001&addr=n3:7002", want{mode: redisurl.Cluster, addrs: []string{"n1:7000", "n2:7001", "n3:7002"}}},
		{"redis://n1:7000/0?cluster=1&write_timeout=5s", want{mode: redisurl.Cluster, addrs: []string{"n1:7000"}, wr: 5 * time.Second}},
		{"rediss://app:pw@n1:7000?cluster=true&skip_verify=true", want{mode: redisurl.Cluster, addrs: []string{"n1:7000"},
			user: "app", pass: "pw", tls: "n1", skipVerify: true}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			w := def(tc.want)
			tg, err := redisurl.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Mode != w.mode {
				t.Fatalf("mode %q, want %q", tg.Mode, w.mode)
			}
			if got := strings.Join(tg.Addrs(), ","); got != strings.Join(w.addrs, ",") {
				t.Errorf("addrs %s, want %v", got, w.addrs)
			}
			type got struct {
				user, pass, suser, spass, master string
				db                               int
				tls                              *tlsView
				dial, read, wr                   time.Duration
			}
			var g got
			switch w.mode {
			case redisurl.Single:
				o := tg.Single
				g = got{o.Username, o.Password, "", "", "", o.DB, view(o.TLSConfig), o.DialTimeout, o.ReadTimeout, o.WriteTimeout}
			case redisurl.Sentinel:
				o := tg.Failover
				g = got{o.Username, o.Password, o.SentinelUsername, o.SentinelPassword, o.MasterName, o.DB, view(o.TLSConfig), o.DialTimeout, o.ReadTimeout, o.WriteTimeout}
			case redisurl.Cluster:
				o := tg.Cluster
				g = got{o.Username, o.Password, "", "", "", 0, view(o.TLSConfig), o.DialTimeout, o.ReadTimeout, o.WriteTimeout}
			}
			if g.user != w.user || g.pass != w.pass || g.suser != w.suser || g.spass != w.spass || g.master != w.master || g.db != w.db {
				t.Errorf("credentials/master/db %q:%q sentinel %q:%q master %q db %d; want %q:%q sentinel %q:%q master %q db %d",
					g.user, g.pass, g.suser, g.spass, g.master, g.db, w.user, w.pass, w.suser, w.spass, w.master, w.db)
			}
			if (g.tls == nil) != (w.tls == "") || (g.tls != nil && (g.tls.serverName != w.tls || g.tls.skip != w.skipVerify || g.tls.minVersion < tls.VersionTLS12)) {
				t.Errorf("TLS %+v, want server name %q skip_verify %v, at least TLS 1.2", g.tls, w.tls, w.skipVerify)
			}
			if g.dial != w.dial || g.read != w.read || g.wr != w.wr {
				t.Errorf("timeouts dial %s read %s write %s, want %s %s %s", g.dial, g.read, g.wr, w.dial, w.read, w.wr)
			}
			if w.mode == redisurl.Cluster && tg.Cluster.ClusterStateReloadInterval != redisurl.ClusterReload {
				t.Errorf("slot map re-read every %s, want %s", tg.Cluster.ClusterStateReloadInterval, redisurl.ClusterReload)
			}
			c := tg.Client()
			defer c.Close()
			switch cl := c.(type) {
			case *redis.ClusterClient:
				if w.mode != redisurl.Cluster {
					t.Errorf("a cluster client for mode %s", w.mode)
				}
			case *redis.Client:
				// A Sentinel-backed client dials through its Sentinels;
				// go-redis names its address so.
				sentinel := cl.Options().Addr == "FailoverClient"
				if (w.mode == redisurl.Sentinel) != sentinel || w.mode == redisurl.Cluster {
					t.Errorf("a node client (addr %q) for mode %s", cl.Options().Addr, w.mode)
				}
			default:
				t.Errorf("client %T", c)
			}
		})
	}
}

type tlsView struct {
	serverName string
	skip       bool
	minVersion int
}

func view(c *tls.Config) *tlsView {
	if c == nil {
		return nil
	}
	return &tlsView{serverName: c.ServerName, skip: c.InsecureSkipVerify, minVersion: int(c.MinVersion)}
}

// TestRefusals: a malformed or contradictory URL is refused with one line
// that says why, and never repeats a password.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"localhost:6379", "must start with redis:// or rediss://"},
		{"http://h:1", "must start with redis:// or rediss://"},
		{"unix:///tmp/redis.sock", "must start with redis:// or rediss://"},
		{"redis://", "names no host"},
		{"redis://:s3cret@/0", "names no host"},
		{"redis://u:s3cret@h:1%zz", "not a URL"},
		{"redis://u:s3cret@h:port", "not a URL"},
		{"redis://h:1/x", "invalid database number"},
		{"redis://u:s3cret@h:1?bogus=1", "unexpected option: bogus"},
		{"redis://h:1?skip_verify=true", "unexpected option: skip_verify"},
		{"redis://h:1?cluster=yes", `cluster="yes": want true or false`},
		{"redis://h:1?master_name=", "master_name is empty"},
		{"redis://h:1?master_name=m&cluster=true", "contradict"},
		{"redis://h:1?master_name=m&cluster=false", "contradict"},
		{"redis://h:1?master_name=m&addr=nope", "unable to parse addr param: nope"},
		{"redis://h:1?master_name=m&replica_only=true", "replica_only is refused"},
		{"redis://h:1?master_name=m&route_by_latency=true", "route_by_latency is refused"},
		{"redis://h:1?master_name=m&route_randomly=true", "route_randomly is refused"},
		{"redis://h:1?master_name=m&password=s3cret&bogus=1", "unexpected option: bogus"},
		{"redis://h:1?cluster=false&addr=h2:2", "several addresses without master_name mean Cluster"},
		{"redis://h:1/3?addr=h2:2", "Cluster has only database 0"},
		{"redis://h:1?addr=h2:2&db=1", "unexpected option: db"},
		{"redis://h:1?addr=nope", "unable to parse addr param: nope"},
		{"redis://h:1?addr=h2:2&read_only=true", "read_only is refused"},
		{"redis://h:1?cluster=true&route_randomly=true", "route_randomly is refused"},
		{"redis://h:1?addr=h2:2&skip_verify=true", "skip_verify needs rediss://"},
		{"rediss://h:1?addr=h2:2&skip_verify=maybe", `skip_verify="maybe"`},
	} {
		_, err := redisurl.Parse(tc.url)
		if err == nil {
			t.Errorf("%s: accepted", tc.url)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") || strings.HasPrefix(msg, "redis: ") {
			t.Errorf("%s:\n got %q\nwant one line containing %q, without the password or go-redis's prefix", tc.url, msg, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"rediss://u:s3cret@h:1?master_name=m&password=p4ss": "rediss://u:xxxxx@h:1?master_name=m&password=xxxxx",
		"redis://h:1?addr=h2:2":                             "redis://h:1?addr=h2:2",
		"redis://u:s3cret@h:1%zz":                           "",
	} {
		if got := redisurl.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTLSAndACLOnARealServer: a rediss:// URL with an ACL user reaches a
// real redis-server over TLS as that user, and a wrong password is
// refused by the server (the credentials are really sent).
func TestTLSAndACLOnARealServer(t *testing.T) {
	dir := t.TempDir()
	ca := mustCert(t, dir)
	tlsPort, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := redisproc.Start(context.Background(), redisproc.Options{Dir: dir, Args: []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "server.crt"), "--tls-auth-clients", "no",
		"--user", "alice", "on", ">s3cret", "~*", "&*", "+@all",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	ctx := context.Background()
	for pass, wantErr := range map[string]string{"s3cret": "", "wrong": "WRONGPASS"} {
		tg, err := redisurl.Parse("rediss://alice:" + pass + "@127.0.0.1:" + strconv.Itoa(tlsPort) + "/0")
		if err != nil {
			t.Fatal(err)
		}
		tg.Single.TLSConfig.RootCAs = ca // the test's own CA; production trusts the system's (SSL_CERT_FILE)
		c := tg.Client()
		who, err := c.Do(ctx, "ACL", "WHOAMI").Text()
		_ = c.Close()
		switch {
		case wantErr == "" && (err != nil || who != "alice"):
			t.Errorf("over TLS as alice: %q %v", who, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("wrong password: %q %v, want %s", who, err, wantErr)
		}
	}
	// And the plain port does not speak TLS: the URL's scheme is obeyed.
	tg, _ := redisurl.Parse("rediss://alice:s3cret@" + srv.Addr())
	tg.Single.TLSConfig.RootCAs = ca
	c := tg.Client()
	defer c.Close()
	short, cancel := context.WithTimeout(ctx, time.Second) // the handshake hangs; go-redis would retry it
	defer cancel()
	if err := c.Ping(short).Err(); err == nil {
		t.Error("rediss:// to the plain-text port answered")
	}
}

// mustCert writes a self-signed certificate for 127.0.0.1 (server.crt,
// server.key) into dir and returns a pool that trusts it.
func mustCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pixelflow test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*pem.Block{"server.crt": {Type: "CERTIFICATE", Bytes: der}, "server.key": {Type: "EC PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
