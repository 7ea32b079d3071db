package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	def, err := ParseTrusted(DefaultTrusted)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, remote, xff, fwd string
		trusted                []netip.Prefix
		want                   string
	}{
		{name: "direct client", remote: "203.0.113.7:5000", trusted: def, want: "203.0.113.7"},
		{name: "direct client's own XFF is ignored", remote: "203.0.113.7:5000", xff: "198.51.100.1", trusted: def, want: "203.0.113.7"},
		{name: "behind a gateway", remote: "127.0.0.1:40000", xff: "203.0.113.7", trusted: def, want: "203.0.113.7"},
		{name: "spoofed hop left of the real one", remote: "10.0.0.2:1", xff: "198.51.100.1, 203.0.113.7", trusted: def, want: "203.0.113.7"},
		{name: "spoofed private hop", remote: "10.0.0.2:1", xff: "10.9.9.9, 203.0.113.7", trusted: def, want: "203.0.113.7"},
		{name: "load balancer then gateway", remote: "127.0.0.1:1", xff: "203.0.113.7, 10.0.0.5", trusted: def, want: "203.0.113.7"},
		{name: "several header lines", remote: "127.0.0.1:1", xff: "203.0.113.7\n10.0.0.5", trusted: def, want: "203.0.113.7"},
		{name: "all hops trusted: leftmost", remote: "127.0.0.1:1", xff: "127.0.0.2, 10.0.0.5", trusted: def, want: "127.0.0.2"},
		{name: "Forwarded", remote: "127.0.0.1:1", fwd: `for=198.51.100.9;proto=http, for="[2001:db8:cafe::17]:4711"`, trusted: def, want: "2001:db8:cafe::17"},
		{name: "XFF wins over Forwarded", remote: "127.0.0.1:1", xff: "203.0.113.7", fwd: "for=198.51.100.9", trusted: def, want: "203.0.113.7"},
		{name: "garbage hop stops the walk", remote: "127.0.0.1:1", xff: "203.0.113.7, junk", trusted: def, want: "127.0.0.1"},
		{name: "none trusts nobody", remote: "127.0.0.1:1", xff: "203.0.113.7", trusted: nil, want: "127.0.0.1"},
		{name: "IPv6 peer", remote: "[2001:db8::1]:80", trusted: def, want: "2001:db8::1"},
		{name: "v4-mapped peer", remote: "[::ffff:127.0.0.1]:80", xff: "203.0.113.7", trusted: def, want: "203.0.113.7"},
		{name: "hop with port", remote: "127.0.0.1:1", xff: "203.0.113.7:999", trusted: def, want: "203.0.113.7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
			for _, line := range splitLines(c.xff) {
				r.Header.Add("X-Forwarded-For", line)
			}
			if c.fwd != "" {
				r.Header.Set("Forwarded", c.fwd)
			}
			if got := (Resolver{Trusted: c.trusted}).Addr(r); got.String() != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestKeyBucketsIPv6By64(t *testing.T) {
	a := Key(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := Key(netip.MustParseAddr("2001:db8:1:2:ffff:1:2:3"))
	c := Key(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("keys %s %s %s: want the first two equal, the third apart", a, b, c)
	}
	if String(a) != "2001:db8:1:2::/64" {
		t.Errorf("String = %s", String(a))
	}
	v4 := Key(netip.MustParseAddr("::ffff:192.0.2.1"))
	if String(v4) != "192.0.2.1" {
		t.Errorf("v4-mapped key %s", String(v4))
	}
}

func TestParseTrusted(t *testing.T) {
	for _, s := range []string{"none", "NONE", "", " "} {
		if p, err := ParseTrusted(s); err != nil || p != nil {
			t.Errorf("%q: %v %v", s, p, err)
		}
	}
	p, err := ParseTrusted("10.0.0.0/8, 192.0.2.1 ,2001:db8::/32")
	if err != nil || len(p) != 3 || p[1].Bits() != 32 {
		t.Errorf("got %v %v", p, err)
	}
	if _, err := ParseTrusted("10.0.0.0/8,nope"); err == nil {
		t.Error("accepted a bad entry")
	}
}
