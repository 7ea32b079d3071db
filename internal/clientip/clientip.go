// Package clientip finds the address of the end client behind a request,
// so that limits (pixels per second, WebSocket connections, idempotency
// keys) apply per client and not per proxy: behind a gateway or a load
// balancer every request arrives from the proxy's own address.
//
// A forwarding header is believed only when the hop that added it is
// trusted (TRUSTED_PROXIES). The chain is read from the right, the hop
// nearest to us, skipping trusted proxies: the first untrusted address is
// the client. Anything to the left of it was written by the client itself
// and is ignored, so a client cannot choose its own rate-limit bucket by
// sending a made-up X-Forwarded-For.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// DefaultTrusted is TRUSTED_PROXIES' default: loopback and the private
// ranges, where the reference topology's gateways and load balancers live.
const DefaultTrusted = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"

// ParseTrusted reads a comma-separated list of CIDRs or addresses; "none"
// (or an empty list) trusts no proxy.
func ParseTrusted(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Resolver finds a request's client address.
type Resolver struct {
	// Trusted lists the proxies whose forwarding headers are believed.
	// Empty: only the connection's own address counts.
	Trusted []netip.Prefix
}

// trusted reports whether a is a trusted proxy.
func (r Resolver) trusted(a netip.Addr) bool {
	for _, p := range r.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr returns the client's address: the connection's peer, or, when the
// peer is a trusted proxy, the nearest untrusted hop of X-Forwarded-For
// (or of Forwarded, when no X-Forwarded-For was sent). When every hop is
// trusted the leftmost one is the client. The zero Addr means RemoteAddr
// could not be parsed.
func (r Resolver) Addr(req *http.Request) netip.Addr {
	peer := remote(req.RemoteAddr)
	if !peer.IsValid() || !r.trusted(peer) {
		return peer
	}
	hops := forwardedFor(req.Header)
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := hops[i]
		if !a.IsValid() {
			// A hop we cannot read: stop at the last address we could.
			break
		}
		client = a
		if !r.trusted(a) {
			break
		}
	}
	return client
}

// Key returns the bucket a client's limits are kept under: its IPv4
// address, or its IPv6 /64 (one subscriber usually holds a whole /64, and
// counting each of its 2^64 addresses apart would make limits worthless).
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// String renders a key for logs and idempotency scopes: an IPv4 address,
// or an IPv6 /64 as "2001:db8::/64".
func String(key netip.Addr) string {
	if key.Is6() {
		return key.String() + "/64"
	}
	return key.String()
}

func remote(addr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// forwardedFor lists the hops of X-Forwarded-For, or of Forwarded's for=
// parameters when there is no X-Forwarded-For, left (client) to right
// (nearest proxy). Unreadable hops are zero Addrs.
func forwardedFor(h http.Header) []netip.Addr {
	var out []netip.Addr
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, line := range xff {
			for _, hop := range strings.Split(line, ",") {
				out = append(out, parseHop(strings.TrimSpace(hop)))
			}
		}
		return out
	}
	for _, line := range h.Values("Forwarded") {
		for _, elem := range strings.Split(line, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					out = append(out, parseHop(strings.Trim(v, `"`)))
				}
			}
		}
	}
	return out
}

// parseHop reads "1.2.3.4", "1.2.3.4:5678", "2001:db8::1" or
// "[2001:db8::1]:5678".
func parseHop(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}
