package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
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
	ctx, c := setup(t, Options{Gateways: 2, Env: []string{"OTEL_TRACES_EXPORTER=console", "OTEL_BSP_SCHEDULE_DELAY=100"}})
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
	deadline := time.Now().Add(20 * time.Second)
	for {
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
		if len(spans) >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
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
	dump := fmt.Sprintf("%+v", spans)
	server := find("POST /api/pixels", callerSpan)
	if len(server) != 1 {
		t.Fatalf("no API span continuing the caller's: %s", dump)
	}
	place := find("pixelflow.place", server[0].ID)
	if len(place) != 1 {
		t.Fatalf("no store span under the API span: %s", dump)
	}
	publish := find("publish ", place[0].ID)
	if len(publish) != 1 || publish[0].Kind != 4 { // producer
		t.Fatalf("no relay publish (producer) span under the store span: %s", dump)
	}
	process := find("process ", publish[0].ID)
	procs := map[string]bool{}
	for _, s := range process {
		if s.Kind == 5 { // consumer
			procs[s.Proc] = true
		}
	}
	for _, g := range c.Gateways {
		if !procs[g.Name] {
			t.Errorf("%s has no consumer span under the publish span: %s", g.Name, dump)
		}
	}
	t.Logf("one trace %s: %s", traceID, dump)
}

// TestCanaryDrivesReadiness: the gateway's /readyz fails when canaries stop
// (the relay, here inside the api process, is stopped) and recovers when
// they flow again.
func TestCanaryDrivesReadiness(t *testing.T) {
	ctx, c := setup(t, Options{Gateways: 1, Durable: true, Env: []string{"CANARY_INTERVAL=200ms", "CANARY_BOUND=1500ms"}})
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
	if err := c.API.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(false, 10*time.Second)
	if ok, body := ready(); ok || !strings.Contains(body, "canary") {
		t.Errorf("not ready for another reason than the canary: %s", body)
	}
	if err := c.API.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(true, 10*time.Second)
}
