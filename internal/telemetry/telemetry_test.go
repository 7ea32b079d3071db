package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Nothing configured means no tracing at all; "none" too; a bad exporter
// name is an error at start, not a silent no-op.
func TestTracingFollowsTheEnvironment(t *testing.T) {
	ctx := context.Background()
	for exporter, enabled := range map[string]bool{"": false, "none": false, "console": true} {
		t.Setenv("OTEL_TRACES_EXPORTER", exporter) // autoexport reads the process environment
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		tel, err := New(ctx, Options{Service: "t", Getenv: os.Getenv})
		if err != nil {
			t.Fatal(err)
		}
		if tel.Enabled != enabled {
			t.Errorf("OTEL_TRACES_EXPORTER=%q: enabled %v", exporter, tel.Enabled)
		}
		_ = tel.Shutdown(ctx)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
	if _, err := New(ctx, Options{Getenv: os.Getenv}); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Errorf("bad exporter: %v", err)
	}
}

// Lines logged inside a span carry its ids; others do not.
func TestLogLinesCarryTraceIDs(t *testing.T) {
	tel, err := New(context.Background(), Options{Exporter: tracetest.NewInMemoryExporter(), Syncer: true})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("role", "test")
	ctx, span := tel.Tracer.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	id := span.SpanContext().TraceID().String()
	if !strings.Contains(lines[0], `"trace_id":"`+id+`"`) || !strings.Contains(lines[0], `"span_id":"`) {
		t.Errorf("inside: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("outside: %s", lines[1])
	}
}

// A log line is one JSON object with each key once, durations in seconds.
func TestLogLinesParse(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo, JSONLogs).With("role", "gateway", "instance", "gw-1")
	log.With("component", "gateway", "instance", "gw-1").Info("stream read failed; retrying", "in", 1500*time.Millisecond, "role", "again")
	log.WithGroup("g").Info("grouped", "instance", "inner")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for _, line := range lines {
		keys, err := topLevelKeys(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q repeated in %s", k, line)
			}
			seen[k] = true
		}
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["in_s"] != 1.5 || first["in"] != nil || first["role"] != "again" || first["instance"] != "gw-1" || first["component"] != "gateway" {
		t.Errorf("line %s: want in_s=1.5 (seconds, the unit in the key), the innermost role, one instance", lines[0])
	}
}

// TestTextLogs: LOG_FORMAT=text writes key=value lines with the same
// keys, each once, and durations as Go writes them.
func TestTextLogs(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo, TextLogs).With("role", "gateway", "instance", "gw-1")
	log.With("instance", "gw-2").Info("stream read failed; retrying", "in", 1500*time.Millisecond)
	log.Debug("not at info")
	got := strings.TrimSuffix(buf.String(), "\n")
	if strings.Contains(got, "\n") || strings.HasPrefix(got, "{") {
		t.Fatalf("want one text line, got %q", got)
	}
	_, got, _ = strings.Cut(got, " ") // the time
	if want := `level=INFO msg="stream read failed; retrying" role=gateway instance=gw-2 in=1.5s`; got != want {
		t.Errorf("text line\n got %s\nwant %s", got, want)
	}
}

// topLevelKeys lists an object's keys in order, repeats included (which
// encoding/json's map decoding would hide).
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// TestMessageAttributes: the producer and consumer spans of one entry
// carry the same messaging attributes; only the consumer names its group.
func TestMessageAttributes(t *testing.T) {
	pub := Message{Destination: "canvas-stream", Operation: "publish", Command: "xadd", Seq: 42, EventID: "ev1", Epoch: "e1"}
	proc := pub
	proc.Operation, proc.Command, proc.Group = "process", "xreadgroup", "group-a"
	if pub.SpanName() != "publish canvas-stream" || proc.SpanName() != "process canvas-stream" {
		t.Fatalf("span names %q, %q", pub.SpanName(), proc.SpanName())
	}
	attrs := func(m Message) map[string]string {
		out := map[string]string{}
		for _, kv := range m.Attributes() {
			out[string(kv.Key)] = kv.Value.AsString()
		}
		return out
	}
	p, c := attrs(pub), attrs(proc)
	for _, k := range []string{"messaging.system", "messaging.destination.name", "messaging.message.id", "pixelflow.event_id", "pixelflow.epoch"} {
		if p[k] == "" || p[k] != c[k] {
			t.Errorf("%s: publish %q, process %q; want the same, set", k, p[k], c[k])
		}
	}
	if p["messaging.message.id"] != "42" || p["messaging.system"] != "redis" {
		t.Errorf("publish attributes %v", p)
	}
	if _, ok := p["messaging.consumer.group.name"]; ok || c["messaging.consumer.group.name"] != "group-a" {
		t.Errorf("group: publish %v, process %v", p, c)
	}
}
