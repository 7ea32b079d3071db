package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxies runs toxiproxy in-process. Every link from pixelflow to a store
// (Mongo, Redis) goes through one, so a drill can cut, blackhole or slow a
// link, or move it to a restarted container, without reconfiguring
// pixelflow: its processes only ever know the proxy's fixed address.
type Proxies struct {
	server *toxiproxy.ApiServer
	host   string // the address every proxy listens on
}

// NewProxies returns an empty in-process toxiproxy whose proxies listen on
// 127.0.0.1.
func NewProxies() *Proxies { return NewProxiesOn("127.0.0.1") }

// NewProxiesOn returns an empty in-process toxiproxy whose proxies listen
// on host: the docker provider's network gateway, which its containers and
// the test both reach.
func NewProxiesOn(host string) *Proxies {
	return &Proxies{server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop()), host: host}
}

// Proxy is one link: <host>:<port> -> upstream.
type Proxy struct {
	mu sync.Mutex
	p  *toxiproxy.Proxy
	n  int // toxics added, for unique names
}

// Add starts a proxy on a free port in front of upstream.
func (ps *Proxies) Add(name, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(ps.server, name, net.JoinHostPort(ps.host, "0"), upstream)
	if err := ps.server.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("toxiproxy %s: %w", name, err)
	}
	return &Proxy{p: p}, nil
}

// Close stops every proxy.
func (ps *Proxies) Close() { _ = ps.server.Collection.Clear() }

// Addr is the proxy's listen address (stable across Cut/Restore/Retarget).
func (p *Proxy) Addr() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Listen
}

func (p *Proxy) update(upstream string, enabled bool) error {
	p.p.Lock()
	in := &toxiproxy.Proxy{Name: p.p.Name, Listen: p.p.Listen, Upstream: upstream, Enabled: enabled}
	p.p.Unlock()
	if err := p.p.Update(in); err != nil {
		return fmt.Errorf("toxiproxy %s: %w", in.Name, err)
	}
	return nil
}

// Cut closes every connection through the link and refuses new ones, as
// when the store's host vanishes.
func (p *Proxy) Cut() error { return p.update(p.Upstream(), false) }

// Restore re-opens a cut link on the same address.
func (p *Proxy) Restore() error { return p.update(p.Upstream(), true) }

// Retarget points the link at a new upstream (a restarted container on a
// new port); open connections are closed.
func (p *Proxy) Retarget(upstream string) error { return p.update(upstream, true) }

// Upstream is where the link leads.
func (p *Proxy) Upstream() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Upstream
}

// Blackhole makes the link swallow data in both directions without closing
// (toxiproxy's timeout toxic with timeout 0): the worst kind of partition,
// where only deadlines notice. It returns the function that lifts it.
func (p *Proxy) Blackhole() (lift func() error, err error) {
	return p.Toxic("timeout", map[string]any{"timeout": 0})
}

// Latency delays data through the link in both directions by d ± jitter.
func (p *Proxy) Latency(d, jitter time.Duration) (lift func() error, err error) {
	return p.Toxic("latency", map[string]any{"latency": d.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// Toxic adds a toxiproxy toxic of any kind (reset_peer, slicer, timeout,
// bandwidth, …) with its attributes to both directions of the link and
// returns the function that lifts it.
func (p *Proxy) Toxic(kind string, attrs map[string]any) (func() error, error) {
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	var names []string
	for _, stream := range []string{"upstream", "downstream"} {
		name := fmt.Sprintf("%s_%s_%d", kind, stream, n)
		var a []string
		for k, v := range attrs {
			a = append(a, fmt.Sprintf("%q:%v", k, v))
		}
		js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":{%s}}`, name, kind, stream, strings.Join(a, ","))
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return nil, fmt.Errorf("toxiproxy %s: add %s: %w", p.p.Name, kind, err)
		}
		names = append(names, name)
	}
	return func() error {
		for _, name := range names {
			if err := p.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
				return fmt.Errorf("toxiproxy %s: remove %s: %w", p.p.Name, name, err)
			}
		}
		return nil
	}, nil
}
