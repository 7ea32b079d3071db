// Package web serves the browser page from files embedded in the binary: no
// CDN, no build step. The page follows docs/protocol.md like internal/client.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the page at / (and its assets).
func Handler() http.Handler {
	sub, _ := fs.Sub(files, "static")
	return http.FileServerFS(sub)
}
