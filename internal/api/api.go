// Package api serves pixelflow's HTTP API: placing pixels, the canvas
// snapshot, and health. Handlers validate everything before touching the
// store, so bad input gets a clear 4xx and changes nothing; errors are mapped
// to statuses in one place (writeError) and internal details are logged,
// never sent.
package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/clientip"
	"github.com/pixelflow/pixelflow/internal/option"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// Store is what the API needs of the pixel store.
type Store interface {
	Place(ctx context.Context, p canvas.Placement, idemKey string, tr store.Trace) (canvas.Event, bool, error)
	Snapshot(ctx context.Context) (canvas.Position, []store.Pixel, error)
}

// Check is a named readiness probe; a non-nil error makes /readyz fail.
// /readyz answers the check's name and a short code (CheckError's, else
// "failing"), never the error itself: that goes to the log.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// CheckError gives a failed check the code /readyz shows for it
// ("unreachable", "not_consuming", …); Err is only logged.
type CheckError struct {
	Code string
	Err  error
}

func (e *CheckError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// checkCode is the public code of a failed check.
func checkCode(err error) string {
	var ce *CheckError
	if errors.As(err, &ce) && ce.Code != "" {
		return ce.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "failing"
}

// Options configure the API.
type Options struct {
	// Size is the canvas extent; placements outside it are rejected.
	Size canvas.Size
	// RateLimit is the sustained writes per second allowed per client (its
	// address, see TrustedProxies; IPv6 clients by /64); 0 disables
	// limiting. Burst is the bucket size (default 2×RateLimit, at least 1).
	RateLimit float64
	Burst     int
	// RateClients bounds how many clients' buckets are kept (least recently
	// used recycled first), so memory stays bounded whatever the number of
	// distinct addresses. Default 65536 (about 8 MiB).
	RateClients int
	// TrustedProxies are the proxies (gateways, load balancers) whose
	// X-Forwarded-For or Forwarded header names the client. Empty: the
	// connection's own address is the client.
	TrustedProxies []netip.Prefix
	// SnapshotKey, when set, names the newest stream position a client can
	// hold right now: snapshots built under one key are shared between
	// requests and answer If-None-Match with 304 (see snapshots). Without
	// it only concurrent requests share builds, and there is no ETag.
	SnapshotKey func(ctx context.Context) (string, error)
	// SnapshotBuilds bounds concurrent snapshot builds. Default 1: builds
	// are shared by every request that arrives while they wait, so running
	// more at once only costs memory.
	SnapshotBuilds int
	// Ready lists the readiness checks behind /readyz.
	Ready []Check
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Tracer and Propagator trace requests (otelhttp) and the store call,
	// and carry the trace into the outbox. Default: no-op tracing that
	// still passes an incoming traceparent on.
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// API is the HTTP handler set.
type API struct {
	store   Store
	opts    Options
	clients clientip.Resolver
	limiter *limiter
	snaps   *snapshots
	mux     *http.ServeMux
	handler http.Handler
	tracer  trace.Tracer
	ready   readiness
}

// maxBody bounds a POST body: a placement is far smaller.
const maxBody = 1 << 10

// Validate refuses options the API cannot serve with. New calls it; so
// does config.Parse, before anything opens.
func (o Options) Validate() error {
	c := option.Checker{Component: "api"}
	const maxSide = canvas.MaxSide
	c.Check(o.Size.Width >= 1 && o.Size.Width <= maxSide, "Width", o.Size.Width, "must be from 1 to %d", maxSide)
	c.Check(o.Size.Height >= 1 && o.Size.Height <= maxSide, "Height", o.Size.Height, "must be from 1 to %d", maxSide)
	c.Check(o.RateLimit >= 0, "RateLimit", o.RateLimit, "must be >= 0")
	c.Check(o.Burst >= 0, "Burst", o.Burst, "must not be negative")
	return c.Err()
}

// New returns the API. It validates opts.
func New(s Store, opts Options) (*API, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Burst <= 0 {
		opts.Burst = max(1, int(2*opts.RateLimit))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider()
	}
	if opts.Propagator == nil {
		opts.Propagator = propagation.TraceContext{}
	}
	if opts.SnapshotBuilds <= 0 {
		opts.SnapshotBuilds = 1
	}
	a := &API{store: s, opts: opts, mux: http.NewServeMux(), tracer: opts.Tracer.Tracer("github.com/pixelflow/pixelflow/internal/api"),
		clients: clientip.Resolver{Trusted: opts.TrustedProxies},
		snaps:   newSnapshots(s, opts.Size, opts.SnapshotKey, opts.SnapshotBuilds)}
	if opts.RateLimit > 0 {
		a.limiter = newLimiter(opts.RateLimit, opts.Burst, opts.RateClients)
	}
	a.mux.HandleFunc("/api/pixels", a.handlePixels)
	a.mux.HandleFunc("/api/canvas", a.handleCanvas)
	a.mux.HandleFunc("/healthz", a.handleHealthz)
	a.mux.HandleFunc("/readyz", a.handleReadyz)
	routed := telemetry.RecordRoute(a.mux) // the HTTP metrics' route label
	if _, off := opts.Tracer.(noop.TracerProvider); off {
		// Tracing off: no spans to start, so only what otelhttp would
		// still do that matters, reading an incoming trace context for
		// the outbox. otelhttp's per-request wrappers and attributes cost
		// 1.6 % of serve's CPU at 1,000 writes/s for spans nobody records.
		a.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				r = r.WithContext(opts.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
			}
			routed.ServeHTTP(w, r)
		})
		return a, nil
	}
	a.handler = otelhttp.NewHandler(routed, "pixelflow.api",
		otelhttp.WithTracerProvider(opts.Tracer), otelhttp.WithPropagators(opts.Propagator),
		otelhttp.WithFilter(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// HTTP-only error codes, next to the domain's.
const (
	eMethod    = "method_not_allowed"
	eMediaType = "unsupported_media_type"
	eTooLarge  = "too_large"
	// eCanceled: the client went away before its answer; it never sees
	// the status, which only tells the metrics (499, as nginx counts it).
	eCanceled = "canceled"
)

// status maps an error code to its HTTP status: the one place that does.
func status(code string) int {
	switch code {
	case canvas.EInvalid:
		return http.StatusBadRequest
	case canvas.ENotFound:
		return http.StatusNotFound
	case canvas.EConflict:
		return http.StatusConflict
	case canvas.ERateLimited:
		return http.StatusTooManyRequests
	case canvas.EUnavailable:
		return http.StatusServiceUnavailable
	case eMethod:
		return http.StatusMethodNotAllowed
	case eMediaType:
		return http.StatusUnsupportedMediaType
	case eTooLarge:
		return http.StatusRequestEntityTooLarge
	case eCanceled:
		return 499
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := canvas.ErrorCode(err)
	if r.Context().Err() != nil && (code == canvas.EInternal || code == canvas.EUnavailable) {
		// The client gave up (closed the connection, or the server's
		// timeout ended the request): nothing failed on our side.
		a.opts.Logger.DebugContext(r.Context(), "request abandoned by its client", "method", r.Method, "path", r.URL.Path, "err", err)
		code, err = eCanceled, canvas.Errorf(eCanceled, "request canceled")
	}
	switch code {
	case canvas.EInternal:
		a.opts.Logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	case canvas.EUnavailable:
		a.opts.Logger.WarnContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, canvas.ErrorMessage(err)
	if code == canvas.EUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status(code), body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// placeRequest is the POST body. Pointers tell missing fields from zeros.
type placeRequest struct {
	GX    *int    `json:"gx"`
	GY    *int    `json:"gy"`
	Color *string `json:"color"`
}

var idemKeyRE = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)

// traceparent per W3C Trace Context (version 00).
var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

func (a *API) handlePixels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.writeError(w, r, canvas.Errorf(eMethod, "use POST to place a pixel"))
		return
	}
	p, err := a.decodePlacement(w, r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !idemKeyRE.MatchString(key) {
		a.writeError(w, r, canvas.Errorf(canvas.EInvalid, "Idempotency-Key must be 1..128 printable ASCII characters"))
		return
	}
	client := clientip.Key(a.clients.Addr(r))
	if key != "" {
		// Keys are the client's own: another client's same key neither
		// replays its answer nor conflicts with it.
		key = store.ScopedKey(clientip.String(client), key)
	}
	if a.limiter != nil {
		if ok, wait := a.limiter.allow(client); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			a.writeError(w, r, canvas.Errorf(canvas.ERateLimited, "too many pixels; wait %s", wait.Round(time.Millisecond)))
			return
		}
	}
	// The store call gets a span of its own (the embedded engine has no
	// driver instrumentation), and its context is what the outbox keeps:
	// the relay and the gateways continue this trace from it.
	ctx, span := a.tracer.Start(r.Context(), "pixelflow.place", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("db.system", "mongodb"), attribute.String("db.operation.name", "transaction"),
			attribute.String("db.collection.name", "pixels outbox"), attribute.Int("pixel.gx", p.GX), attribute.Int("pixel.gy", p.GY)))
	var tr store.Trace
	a.opts.Propagator.Inject(ctx, telemetry.Carrier{TraceParent: &tr.TraceParent, TraceState: &tr.TraceState})
	if !traceparentRE.MatchString(tr.TraceParent) {
		tr = store.Trace{}
	}
	tr.TraceState = truncate(tr.TraceState, 512)
	ev, replayed, err := a.store.Place(ctx, p, key, tr)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.End()
		a.writeError(w, r, err)
		return
	}
	span.SetAttributes(attribute.String("pixel.event_id", ev.ID), attribute.Int64("pixel.version", ev.Version), attribute.Bool("idempotent_replay", replayed))
	span.End()
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	// The event as the WebSocket protocol shows it, before the relay has
	// sequenced and published it.
	writeJSON(w, http.StatusCreated, protocol.Event{
		ID: ev.ID, GX: ev.GX, GY: ev.GY, Color: ev.Color.String(), Version: ev.Version, CommittedAt: ev.CommittedAt,
	})
}

// decodePlacement parses and validates the body strictly: JSON object with
// exactly gx, gy (integers) and color ("#RRGGBB"), nothing else, ≤ 1 KiB.
func (a *API) decodePlacement(w http.ResponseWriter, r *http.Request) (canvas.Placement, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		return canvas.Placement{}, canvas.Errorf(eMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return canvas.Placement{}, canvas.Errorf(eTooLarge, "body must be at most %d bytes", maxBody)
		}
		return canvas.Placement{}, canvas.Errorf(canvas.EInvalid, "could not read body")
	}
	req, err := parsePlacement(body)
	if err != nil {
		return canvas.Placement{}, err
	}
	c, err := canvas.ParseColor(*req.Color)
	if err != nil {
		return canvas.Placement{}, err
	}
	p := canvas.Placement{GX: *req.GX, GY: *req.GY, Color: c}
	return p, p.Validate(a.opts.Size)
}

func parsePlacement(body []byte) (placeRequest, error) {
	var req placeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, canvas.Errorf(canvas.EInvalid, "body must be a JSON object {\"gx\":int,\"gy\":int,\"color\":\"#RRGGBB\"}: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, canvas.Errorf(canvas.EInvalid, "body must hold exactly one JSON object")
	}
	switch {
	case req.GX == nil:
		return req, canvas.Errorf(canvas.EInvalid, "gx is required")
	case req.GY == nil:
		return req, canvas.Errorf(canvas.EInvalid, "gy is required")
	case req.Color == nil:
		return req, canvas.Errorf(canvas.EInvalid, "color is required")
	}
	return req, nil
}

// jsonProblem describes a decoding error without echoing much of the input.
func jsonProblem(err error) string {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		return fmt.Sprintf("%s must be %s, got %s", ute.Field, friendlyType(ute.Type.String()), ute.Value)
	case errors.As(err, &se):
		return "not valid JSON"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "body is empty or truncated"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "not valid JSON"
}

func friendlyType(t string) string {
	switch t {
	case "int":
		return "an integer"
	case "string":
		return "a string"
	}
	return t
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// CanvasJSON is the JSON snapshot, declared once in package protocol for
// the API that writes it and the clients that read it.
type CanvasJSON = protocol.Snapshot

// PixelJSON is one painted pixel of a snapshot.
type PixelJSON = protocol.SnapshotPixel

// Background is the colour of unpainted pixels in the binary snapshot.
const Background = canvas.Color(0xFFFFFF)

func (a *API) handleCanvas(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.writeError(w, r, canvas.Errorf(eMethod, "use GET to read the canvas"))
		return
	}
	binary := wantsBinary(r.Header.Get("Accept"))
	gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
	form := map[bool]string{true: "bin", false: "json"}[binary]
	regions, regional, err := a.canvasRegions(r, binary)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if regional {
		// Each region list is a form of its own: its ETag never matches
		// the whole snapshot's, nor another list's.
		form += ".r" + regionsTag(regions)
	}
	if gz {
		form += ".gz"
	}
	h := w.Header()
	h.Set("Vary", "Accept, Accept-Encoding")
	key, keyed := a.snaps.currentKey(r.Context())
	if keyed && matchesETag(r.Header.Get("If-None-Match"), etagFor(key, form)) {
		// The client's copy was built under the current key: it is as
		// good as a new one.
		h.Set("ETag", etagFor(key, form))
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	snap, err := a.snaps.get(r.Context(), key, keyed)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if etag := snap.etag(form); etag != "" {
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache") // keep it, but ask again each time (304 when unchanged)
	} else {
		h.Set("Cache-Control", "no-store")
	}
	var body []byte
	if regional {
		// Filtered from the whole build: the same position (read before
		// its pixels), so the same rule for the events kept meanwhile.
		h.Set("Content-Type", "application/json")
		body = snap.regionsJSON(regions)
		if gz {
			body = gzipBytes(body)
		}
	} else if binary {
		// RGB bytes, row-major; the position travels in headers. The form
		// carries no versions: a client starting from it converges because
		// the relay publishes each pixel's versions in order.
		h.Set("Content-Type", "application/octet-stream")
		h.Set("X-Canvas-Width", strconv.Itoa(a.opts.Size.Width))
		h.Set("X-Canvas-Height", strconv.Itoa(a.opts.Size.Height))
		h.Set("X-Stream-Epoch", snap.pos.Epoch)
		h.Set("X-Stream-Seq", strconv.FormatUint(snap.pos.Seq, 10))
		body = snap.binary()
		if gz {
			body = snap.binaryGzip()
		}
	} else {
		h.Set("Content-Type", "application/json")
		body = snap.jsonGzip()
		if !gz {
			// Rare (browsers and Go clients accept gzip): inflate the one
			// encoding kept rather than keep a second, 20× larger.
			w.WriteHeader(http.StatusOK)
			if r.Method != http.MethodHead {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err == nil {
					_, _ = io.Copy(w, zr)
				}
			}
			return
		}
	}
	if gz {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// canvasRegions reads the regions= query of GET /api/canvas: regional is
// false without one; an empty list is a region snapshot of no region.
func (a *API) canvasRegions(r *http.Request, binary bool) (regions []canvas.Region, regional bool, err error) {
	lists, ok := r.URL.Query()["regions"]
	if !ok {
		return nil, false, nil
	}
	if len(lists) > 1 {
		return nil, false, canvas.Errorf(canvas.EInvalid, "regions: given %d times; name every region in one comma-separated list", len(lists))
	}
	if binary {
		return nil, false, canvas.Errorf(canvas.EInvalid, "regions are served as JSON only: ask without Accept: application/octet-stream")
	}
	regions, err = canvas.ParseRegions(a.opts.Size, lists[0])
	if err != nil {
		return nil, false, err
	}
	return regions, true, nil
}

// regionsTag names a sorted region list in an ETag: short whatever the
// list's length (up to MaxRegions ids).
func regionsTag(regions []canvas.Region) string {
	h := fnv.New64a()
	var b [2]byte
	for _, r := range regions {
		binary.BigEndian.PutUint16(b[:], uint16(r))
		_, _ = h.Write(b[:])
	}
	return strconv.Itoa(len(regions)) + "-" + strconv.FormatUint(h.Sum64(), 36)
}

func wantsBinary(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/octet-stream" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding allows gzip (q=0 refuses it).
func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// matchesETag reports whether an If-None-Match header lists etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func matchesETag(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

func (a *API) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) handleReadyz(w http.ResponseWriter, r *http.Request) {
	a.ready.serve(w, r, a.opts.Ready, a.opts.Logger)
}

// readiness is the state of one /readyz: whether it has answered ready
// yet. Until then a failing check is a process still starting (a private
// redis-server coming up, a gateway waiting for the first epoch), which
// every orchestrator's probe sees on every start: information. Once it
// has been ready, a failing check is trouble: a warning.
type readiness struct{ was atomic.Bool }

// serve runs the checks and answers each one's name with "ok" or its
// code; the errors themselves go to the log, since they name addresses and
// internals a public endpoint must not show.
func (rd *readiness) serve(w http.ResponseWriter, r *http.Request, checks []Check, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	res := map[string]string{}
	code := http.StatusOK
	level, msg := slog.LevelInfo, "not ready yet"
	if rd.was.Load() {
		level, msg = slog.LevelWarn, "readiness check failed"
	}
	for _, c := range checks {
		if err := c.Fn(ctx); err != nil {
			res[c.Name] = checkCode(err)
			code = http.StatusServiceUnavailable
			log.Log(ctx, level, msg, "check", c.Name, "code", res[c.Name], "err", err)
		} else {
			res[c.Name] = "ok"
		}
	}
	if code == http.StatusOK {
		rd.was.Store(true)
	}
	writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "checks": res})
}

// HealthHandler serves /api/health: the workers' figures from health (the
// caller keeps internals out of them). It is apart from the API so that it
// can be served on the admin listener only.
func HealthHandler(health func(ctx context.Context) map[string]any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{}
		if health != nil {
			out = health(r.Context())
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// NewHealth returns a handler serving only /healthz and /readyz, for roles
// that run without the write path.
func NewHealth(ready []Check, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	rd := &readiness{}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { rd.serve(w, r, ready, log) })
	return telemetry.RecordRoute(mux)
}
