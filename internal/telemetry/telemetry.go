// Package telemetry sets up what every pixelflow process reports about
// itself: OpenTelemetry traces (one trace follows a pixel from the HTTP
// request to the WebSocket write), Prometheus metrics on /metrics, and log
// lines that carry the trace and span ids of the operation they belong to.
//
// Traces are configured by the standard OpenTelemetry environment
// variables (OTEL_TRACES_EXPORTER=otlp|console|none,
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, …).
// With none of OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, tracing is a no-op: no exporter,
// no spans recorded, nothing to pay.
//
// Nothing here is global: the tracer provider, propagator and registry are
// handed to the components that need them.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Telemetry is one process's tracing and metrics.
type Telemetry struct {
	// Tracer creates spans; a no-op provider when tracing is off.
	Tracer trace.TracerProvider
	// Propagator carries trace context across HTTP and the outbox/stream.
	Propagator propagation.TextMapPropagator
	// Registry holds this process's Prometheus metrics.
	Registry *prometheus.Registry
	// Enabled reports whether spans are exported.
	Enabled bool

	shutdown func(context.Context) error
}

// Options configure New.
type Options struct {
	// Service is the default service.name (OTEL_SERVICE_NAME wins).
	Service string
	// Instance is service.instance.id.
	Instance string
	// Getenv reads the environment (os.Getenv in production).
	Getenv func(string) string
	// Exporter, when set, replaces the environment's choice (tests use an
	// in-memory exporter).
	Exporter sdktrace.SpanExporter
	// Syncer exports each span as it ends instead of in batches (tests).
	Syncer bool
}

// New sets up telemetry for one process. Shutdown flushes it.
func New(ctx context.Context, o Options) (*Telemetry, error) {
	t := &Telemetry{
		Tracer:     noop.NewTracerProvider(),
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:   prometheus.NewRegistry(),
		shutdown:   func(context.Context) error { return nil },
	}
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp := o.Exporter
	if exp == nil && tracingConfigured(o.Getenv) {
		var err error
		if exp, err = autoexport.NewSpanExporter(ctx); err != nil {
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %w", err)
		}
		if autoexport.IsNoneSpanExporter(exp) {
			exp = nil
		}
	}
	if exp == nil {
		return t, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(o.Service), semconv.ServiceInstanceID(o.Instance)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	spanOpt := sdktrace.WithBatcher(exp)
	if o.Syncer {
		spanOpt = sdktrace.WithSyncer(exp)
	}
	tp := sdktrace.NewTracerProvider(spanOpt, sdktrace.WithResource(res)) // sampler from OTEL_TRACES_SAMPLER
	t.Tracer, t.Enabled, t.shutdown = tp, true, tp.Shutdown
	return t, nil
}

func tracingConfigured(getenv func(string) string) bool {
	if getenv == nil {
		return false
	}
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if getenv(k) != "" {
			return true
		}
	}
	return false
}

// Shutdown flushes the spans still buffered.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}

// LogFormat is how log lines are written (LOG_FORMAT).
type LogFormat string

const (
	// JSONLogs is one JSON object per line, for log collectors: the
	// default.
	JSONLogs LogFormat = "json"
	// TextLogs is key=value lines (slog's text handler), for people at a
	// terminal; durations read as 1.5s rather than a number of seconds.
	TextLogs LogFormat = "text"
)

// NewLogger returns the logger every pixelflow process writes to w
// (stderr), JSON unless format is TextLogs: one line per record, each key
// at most once (a component's With("instance", …) under a process-wide
// With("instance", …) keeps the innermost value), in JSON durations as a
// number of seconds, and trace_id and span_id on lines logged inside a
// traced operation. A JSON duration's key carries its unit ("took_s"),
// since the number alone does not say it; text lines keep slog's "1.5s".
func NewLogger(w io.Writer, level slog.Leveler, format LogFormat) *slog.Logger {
	if format == TextLogs {
		return slog.New(LogHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
	}
	return slog.New(LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: seconds})))
}

// seconds renders durations as seconds (a JSON number) instead of slog's
// bare nanosecond integers, under a key that says so: "_s" appended unless
// the key already ends in "_s" or "_seconds".
func seconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		key := a.Key
		if !strings.HasSuffix(key, "_s") && !strings.HasSuffix(key, "_seconds") {
			key += "_s"
		}
		return slog.Float64(key, a.Value.Duration().Seconds())
	}
	return a
}

// LogHandler wraps h so that every record logged with a context holding a
// recording span carries trace_id and span_id, and no record repeats a key.
func LogHandler(h slog.Handler) slog.Handler { return traceHandler{&dedupHandler{inner: h}} }

// dedupHandler keeps the attributes given by With itself and hands them to
// the inner handler with each record, each key once: JSON parsers keep the
// first or the last of a repeated key, or refuse the line. The innermost
// value wins (a record's own attribute over a With's, a later With over an
// earlier one), at the place of the key's first appearance. Attributes
// inside a group cannot clash with the top level; once a group opens, the
// attributes so far are handed to the inner handler and grouping is its.
type dedupHandler struct {
	inner slog.Handler
	attrs []slog.Attr
}

func (h *dedupHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *dedupHandler) Handle(ctx context.Context, r slog.Record) error {
	all := make([]slog.Attr, 0, len(h.attrs)+r.NumAttrs())
	all = append(all, h.attrs...)
	r.Attrs(func(a slog.Attr) bool { all = append(all, a); return true })
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(dedup(all)...)
	return h.inner.Handle(ctx, out)
}

func (h *dedupHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &dedupHandler{inner: h.inner, attrs: dedup(append(slices.Clip(h.attrs), as...))}
}

func (h *dedupHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.inner.WithAttrs(h.attrs).WithGroup(name)
}

// dedup keeps each key once: the last value, at the first position.
func dedup(as []slog.Attr) []slog.Attr {
	last := make(map[string]int, len(as))
	for i, a := range as {
		last[a.Key] = i
	}
	if len(last) == len(as) {
		return as
	}
	out := make([]slog.Attr, 0, len(last))
	seen := make(map[string]bool, len(last))
	for _, a := range as {
		if seen[a.Key] {
			continue
		}
		seen[a.Key] = true
		out = append(out, as[last[a.Key]])
	}
	return out
}

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

// Carrier adapts a traceparent/tracestate pair (as stored in the outbox
// and the stream entry) to the propagator.
type Carrier struct{ TraceParent, TraceState *string }

// Get implements propagation.TextMapCarrier.
func (c Carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return *c.TraceParent
	case "tracestate":
		return *c.TraceState
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (c Carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		*c.TraceParent = value
	case "tracestate":
		*c.TraceState = value
	}
}

// Keys implements propagation.TextMapCarrier.
func (c Carrier) Keys() []string { return []string{"traceparent", "tracestate"} }
