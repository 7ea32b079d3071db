// Package web serves the browser page from files embedded in the binary: no
// CDN, no build step. The page follows docs/protocol.md like internal/harness/client.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the canvas page at /, the dashboard at /ops, and their
// scripts.
func Handler() http.Handler {
	sub, _ := fs.Sub(files, "static")
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ops" {
			r = r.Clone(r.Context())
			r.URL.Path = "/ops.html"
		}
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}
