package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/option"
	"github.com/pixelflow/pixelflow/internal/store"
)

// fakeStore keeps the trace context each placement was stored with.
type fakeStore struct {
	mu     sync.Mutex
	traces []store.Trace
}

func (f *fakeStore) Place(_ context.Context, p canvas.Placement, _ string, tr store.Trace) (canvas.Event, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.traces = append(f.traces, tr)
	return canvas.Event{ID: "e1", GX: p.GX, GY: p.GY, Color: p.Color, Version: 1, CommittedAt: time.Now()}, false, nil
}

func (f *fakeStore) Snapshot(context.Context) (canvas.Position, []store.Pixel, error) {
	return canvas.Position{}, nil, nil
}

const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func place(t *testing.T, h http.Handler, traceparent string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/pixels", strings.NewReader(`{"gx":1,"gy":2,"color":"#ABCDEF"}`))
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
}

// With tracing on, the request span continues the caller's trace, the store
// call is its child, and the outbox keeps the store span's context.
func TestPlacementTraceIsStoredWithTheEvent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	fs := &fakeStore{}
	a, err := api.New(fs, api.Options{Size: canvas.Size{Width: 8, Height: 8}, Tracer: tp, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	place(t, a, incoming)
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	server, ok1 := byName["POST /api/pixels"]
	placeSpan, ok2 := byName["pixelflow.place"]
	if !ok1 || !ok2 {
		t.Fatalf("spans %v, want the request and the store call", spans)
	}
	if server.Parent.SpanID().String() != "00f067aa0ba902b7" || server.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("request span does not continue the caller's trace: parent %s", server.Parent.SpanID())
	}
	if placeSpan.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("store span is not the request span's child")
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + placeSpan.SpanContext.SpanID().String() + "-01"
	if got := fs.traces[0].TraceParent; got != want {
		t.Errorf("outbox traceparent %q, want %q", got, want)
	}
}

// With tracing off the API still passes an incoming traceparent on, and
// stores nothing when there is none.
func TestNoopTracingPassesTraceparentOn(t *testing.T) {
	fs := &fakeStore{}
	a, err := api.New(fs, api.Options{Size: canvas.Size{Width: 8, Height: 8}})
	if err != nil {
		t.Fatal(err)
	}
	place(t, a, incoming)
	place(t, a, "")
	place(t, a, "garbage")
	if fs.traces[0].TraceParent != incoming {
		t.Errorf("traceparent %q not passed on", fs.traces[0].TraceParent)
	}
	if fs.traces[1] != (store.Trace{}) || fs.traces[2] != (store.Trace{}) {
		t.Errorf("stored %+v and %+v for no and a bad traceparent", fs.traces[1], fs.traces[2])
	}
}

// TestOptionsValidated: Validate refuses what the API cannot serve with,
// naming the option; New refuses the same.
func TestOptionsValidated(t *testing.T) {
	good := api.Options{Size: canvas.Size{Width: 8, Height: 8}}
	for field, o := range map[string]api.Options{
		"Width":     {Size: canvas.Size{Width: 0, Height: 8}},
		"Height":    {Size: canvas.Size{Width: 8, Height: canvas.MaxSide + 1}},
		"RateLimit": {Size: good.Size, RateLimit: -1},
		"Burst":     {Size: good.Size, Burst: -1},
	} {
		var oe *option.Error
		if err := o.Validate(); !errors.As(err, &oe) || oe.Field != field {
			t.Errorf("%s: %v, want a refusal of %s", field, err, field)
		}
		if _, err := api.New(nil, o); err == nil {
			t.Errorf("%s: New accepted", field)
		}
	}
	if err := good.Validate(); err != nil {
		t.Errorf("good options refused: %v", err)
	}
}
