//go:build mongo

package store_test

import (
	"context"
	"os"
	"testing"

	"github.com/pixelflow/pixelflow/third_party/lungo"

	"github.com/pixelflow/pixelflow/internal/harness/storetest"
	"github.com/pixelflow/pixelflow/internal/store"
)

// TestContractMongoDB holds a real replica set to the store's contract.
// It is built only with -tags mongo (make test-mongo MONGO_URI=…), and
// fails, never skips, without MONGO_URI: a run that asked for MongoDB and
// proved nothing must not pass.
func TestContractMongoDB(t *testing.T) {
	uri := os.Getenv("MONGO_URI")
	if uri == "" {
		t.Fatal("MONGO_URI is not set: the MongoDB contract run needs a replica set, e.g. make test-mongo MONGO_URI='mongodb://localhost:27017/?replicaSet=rs0'")
	}
	storetest.Run(t, func(t testing.TB) lungo.IClient {
		t.Helper()
		client, closeFn, err := store.Connect(context.Background(), uri, nil)
		if err != nil {
			t.Fatalf("MONGO_URI: %v", err)
		}
		t.Cleanup(func() { _ = closeFn(context.Background()) })
		return client
	})
}
