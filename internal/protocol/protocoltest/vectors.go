// Package protocoltest holds the binary subprotocol's test vectors
// (internal/protocol/testdata/binary_vectors.json, the bytes
// docs/protocol.md quotes) for every test that holds a codec to them: the
// Go codec's own tests and the browser decoder's end-to-end test.
package protocoltest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Vectors are the test vectors: valid messages with their JSON twins, and
// messages a decoder must refuse.
type Vectors struct {
	Valid []struct {
		Name  string          `json:"name"`
		Hex   string          `json:"hex"`
		Frame json.RawMessage `json:"frame"`
	} `json:"valid"`
	Invalid []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
	} `json:"invalid"`
	// Raw is the file as read, for a test that hands it to a browser.
	Raw []byte `json:"-"`
}

// Load reads the vectors, found beside this package whatever the calling
// test's directory, and fails tb when the file is missing, malformed or
// empty.
func Load(tb testing.TB) Vectors {
	tb.Helper()
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("protocoltest: cannot locate its own source")
	}
	dir := filepath.Join(filepath.Dir(here), "..", "testdata")
	path := filepath.Join(dir, "binary_vectors.json")
	raw, err := fs.ReadFile(os.DirFS(dir), "binary_vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v Vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 {
		tb.Fatalf("%s holds no vectors (%d valid, %d invalid)", path, len(v.Valid), len(v.Invalid))
	}
	v.Raw = raw
	return v
}
