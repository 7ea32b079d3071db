package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestOneTraceAcrossProcesses: with OTEL_TRACES_EXPORTER=console every
// process writes its spans as JSON lines into its log. One POST with a
// traceparent must give one trace: the API's request span (child of the
// caller's), the store span, the relay's publish span and each gateway's
// process span, each the child of the one before, across processes.
func TestOneTraceAcrossProcesses(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 2, Env: []string{"OTEL_TRACES_EXPORTER=console", "OTEL_BSP_SCHEDULE_DELAY=100"}})
	const traceID, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.APIURL()+"/api/pixels", strings.NewReader(`{"gx":5,"gy":6,"color":"#A1B2C3"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()

	type span struct {
		Name, Proc string
		ID, Parent string
		Kind       int
		TraceID    string
	}
	var spans []span
	read := func() {
		spans = spans[:0]
		for _, p := range c.Processes() {
			f, err := os.Open(p.Log)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var s struct {
					Name        string
					SpanKind    int
					SpanContext struct{ TraceID, SpanID string }
					Parent      struct{ SpanID string }
				}
				if !strings.HasPrefix(sc.Text(), `{"Name"`) || json.Unmarshal(sc.Bytes(), &s) != nil || s.SpanContext.TraceID != traceID {
					continue
				}
				spans = append(spans, span{s.Name, p.Name, s.SpanContext.SpanID, s.Parent.SpanID, s.SpanKind, s.SpanContext.TraceID})
			}
			f.Close()
		}
	}
	find := func(prefix, parent string) []span {
		var out []span
		for _, s := range spans {
			if strings.HasPrefix(s.Name, prefix) && s.Parent == parent {
				out = append(out, s)
			}
		}
		return out
	}
	// chain follows the trace from the caller's span down to the gateways'
	// consumer spans. It waits for these spans by name, not for a count:
	// on MongoDB the driver adds command spans under the store span, so a
	// count is reached before the relay's and gateways' spans are written.
	type chain struct {
		server, place, publish []span
		procs                  map[string]bool // gateway with a consumer span under publish
	}
	follow := func() chain {
		var ch chain
		ch.procs = map[string]bool{}
		if ch.server = find("POST /api/pixels", callerSpan); len(ch.server) != 1 {
			return ch
		}
		if ch.place = find("pixelflow.place", ch.server[0].ID); len(ch.place) != 1 {
			return ch
		}
		if ch.publish = find("publish ", ch.place[0].ID); len(ch.publish) != 1 {
			return ch
		}
		for _, s := range find("process ", ch.publish[0].ID) {
			if s.Kind == 5 { // consumer
				ch.procs[s.Proc] = true
			}
		}
		return ch
	}
	complete := func(ch chain) bool {
		if len(ch.publish) != 1 {
			return false
		}
		for _, g := range c.Gateways {
			if !ch.procs[g.Name] {
				return false
			}
		}
		return true
	}
	var ch chain
	for deadline := time.Now().Add(20 * time.Second); ; {
		read()
		if ch = follow(); complete(ch) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	dump := fmt.Sprintf("%+v", spans)
	if len(ch.server) != 1 {
		t.Fatalf("no API span continuing the caller's: %s", dump)
	}
	if len(ch.place) != 1 {
		t.Fatalf("no store span under the API span: %s", dump)
	}
	if len(ch.publish) != 1 || ch.publish[0].Kind != 4 { // producer
		t.Fatalf("no relay publish (producer) span under the store span: %s", dump)
	}
	// The publish span comes from the process the cluster says runs the
	// relay: the api on the embedded store, a relay process on MongoDB.
	hosts := map[string]bool{}
	for _, p := range c.RelayHosts() {
		hosts[p.Name] = true
	}
	if !hosts[ch.publish[0].Proc] {
		t.Errorf("the publish span came from %s, not from a relay host of this topology (%s)", ch.publish[0].Proc, c.Topology)
	}
	for _, g := range c.Gateways {
		if !ch.procs[g.Name] {
			t.Errorf("%s has no consumer span under the publish span: %s", g.Name, dump)
		}
	}
	t.Logf("one trace %s: %s", traceID, dump)
}

// TestCanaryDrivesReadiness: the gateway's /readyz fails when canaries stop
// (every process running a relay is stopped: the api on the embedded
// store, the relay processes on MongoDB, as the cluster's topology says)
// and recovers when they flow again.
func TestCanaryDrivesReadiness(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1, Durable: true, Env: []string{"CANARY_INTERVAL=200ms", "CANARY_BOUND=1500ms"}})
	g := c.Gateways[0]
	ready := func() (bool, string) {
		resp, err := http.Get(g.URL() + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode == http.StatusOK, b.String()
	}
	waitFor := func(want bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ok, body := ready()
			if ok == want {
				t.Logf("gateway ready=%v: %s", ok, body)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway ready=%v after %s, want %v: %s", ok, within, want, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(true, 10*time.Second)
	relays := c.RelayHosts()
	if len(relays) == 0 {
		t.Fatalf("the cluster runs no relay (%s)", c.Topology)
	}
	for _, p := range relays {
		t.Logf("stopping %s (relay host on %s)", p.Name, c.Topology)
		if err := p.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(false, 10*time.Second)
	if ok, body := ready(); ok || !strings.Contains(body, "canary") {
		t.Errorf("not ready for another reason than the canary: %s", body)
	}
	for _, p := range relays {
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(true, 10*time.Second)
}

// TestTopologyIsWhatRuns: the facts the suites and drills take from
// Cluster.Topology hold for the processes actually running: each says in
// /api/health which store it opened and whether it runs a relay.
func TestTopologyIsWhatRuns(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1})
	relayHost := map[string]bool{}
	for _, p := range c.RelayHosts() {
		relayHost[p.Name] = true
	}
	for _, p := range append([]*cluster.Process{c.API}, c.Relays...) {
		h, err := health(ctx, p.URL())
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if h.Store != string(c.Topology.Store) {
			t.Errorf("%s opened the %q store, the topology says %s", p.Name, h.Store, c.Topology.Store)
		}
		if runs := h.Relay != nil; runs != relayHost[p.Name] {
			t.Errorf("%s runs a relay: %v; the topology (%s) says %v", p.Name, runs, c.Topology, relayHost[p.Name])
		}
	}
	if got := len(c.Relays) > 0; got == c.Topology.RelayInAPI {
		t.Errorf("%d relay processes with RelayInAPI=%v", len(c.Relays), c.Topology.RelayInAPI)
	}
	if c.Topology.CanPartition(cluster.LinkMongo) != (c.MongoProxy != nil) || !c.Topology.CanPartition(cluster.LinkRedis) || c.RedisProxy == nil {
		t.Errorf("partitionable links %v, proxies: redis %v, mongo %v", c.Topology.Links, c.RedisProxy != nil, c.MongoProxy != nil)
	}
	if c.Topology.DatabaseReadable != (c.Target().MongoURI != "") {
		t.Errorf("DatabaseReadable=%v but the target's MongoURI is %q", c.Topology.DatabaseReadable, c.Target().MongoURI)
	}
	t.Logf("topology: %s", c.Topology)
}

// processHealth is the part of a process's /api/health the topology test
// reads: the store it opened and its relay's status (absent: no relay).
type processHealth struct {
	Store string          `json:"store"`
	Relay json.RawMessage `json:"relay"`
}

func health(ctx context.Context, base string) (processHealth, error) {
	var h processHealth
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/health", nil)
	if err != nil {
		return h, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("GET /api/health: %s", resp.Status)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}
