package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

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
