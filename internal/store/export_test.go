package store

import (
	"context"

	"github.com/pixelflow/pixelflow/third_party/lungo"
)

// PublishAll is publishAll for the package's external tests and benchmarks.
var PublishAll = publishAll

// OpenFile opens an embedded store at path with the file store's options,
// and returns the file store too (its Stats), for the journal's tests.
func OpenFile(ctx context.Context, path string, opts Options, fopts lungo.FileStoreOptions) (*Store, *lungo.FileStore, error) {
	client, fs, closeFn, err := openEngine(ctx, path, fopts)
	if err != nil {
		return nil, nil, err
	}
	s, err := New(ctx, client, "pixelflow", closeFn, opts)
	return s, fs, err
}
