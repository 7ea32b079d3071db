package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// ProxyOptions configure a Proxy.
type ProxyOptions struct {
	// Target is the api's base URL (http or https, with a host). Required.
	Target string
	// ResponseTimeout bounds the wait for the api's answer headers.
	// Default 10s.
	ResponseTimeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// maxProxiedBody bounds what a Proxy reads of a request body before
// forwarding it; the api's own bound (1 KiB) is the one clients see.
const maxProxiedBody = 4 << 10

// NewProxy returns a handler that forwards requests to the api at
// opts.Target, for a process that serves the page and /ws without the api
// (the gateway role with API_URL): mount it on the API's own endpoints
// only. It appends the client's address to X-Forwarded-For and Forwarded,
// so the api's per-client limits apply to the end client (the api believes
// them from TRUSTED_PROXIES only). A request body (a placement: under
// 1 KiB) is read in full first, so a client trickling it is cut by this
// listener's timeouts and never reaches the api. When the api cannot be
// reached the answer is 502 with code "unavailable" and Retry-After: 1.
func NewProxy(opts ProxyOptions) (http.Handler, error) {
	target, err := url.Parse(opts.Target)
	if err != nil || target.Host == "" || (target.Scheme != "http" && target.Scheme != "https") {
		return nil, fmt.Errorf("proxy: target %q is not an http(s) URL with a host", opts.Target)
	}
	if opts.ResponseTimeout == 0 {
		opts.ResponseTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the hops a proxy in front of us recorded, then add ours.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				hop := "for=" + ip
				if strings.Contains(ip, ":") {
					hop = `for="[` + ip + `]"`
				}
				if prev := strings.Join(pr.In.Header.Values("Forwarded"), ", "); prev != "" {
					hop = prev + ", " + hop
				}
				pr.Out.Header.Set("Forwarded", hop)
			}
		},
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: opts.ResponseTimeout,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				log.Debug("proxied request abandoned by its client", "path", r.URL.Path, "err", err)
				w.WriteHeader(499)
				return
			}
			log.Warn("api unreachable through the proxy", "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "1")
			writeProxyError(w, http.StatusBadGateway, canvas.EUnavailable, "the api cannot be reached, try again shortly")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxProxiedBody))
			if err != nil {
				if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
					writeProxyError(w, http.StatusRequestEntityTooLarge, eTooLarge, fmt.Sprintf("body must be at most %d bytes", maxProxiedBody))
					return
				}
				writeProxyError(w, http.StatusBadRequest, canvas.EInvalid, "could not read body")
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		rp.ServeHTTP(w, r)
	}), nil
}

// writeProxyError answers with the API's error body.
func writeProxyError(w http.ResponseWriter, code int, errCode, message string) {
	var body errorBody
	body.Error.Code, body.Error.Message = errCode, message
	writeJSON(w, code, body)
}
