// Package redistest starts redis-server children for tests. It is apart
// from package redisproc so that the pixelflow binary, which uses
// redisproc for its private Redis, does not link package testing.
package redistest

import (
	"context"
	"testing"

	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// MustStart starts a server in a temporary directory for a test and kills it
// when the test ends. It fails the test (never skips) if redis-server is missing.
func MustStart(tb testing.TB, appendOnly bool) *redisproc.Server {
	tb.Helper()
	s, err := redisproc.Start(context.Background(), redisproc.Options{Dir: tb.TempDir(), AppendOnly: appendOnly})
	if err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	tb.Cleanup(func() { s.Kill() })
	return s
}

// MustStartReplica starts a replica of primary for a test (it answers PING
// and refuses writes: READONLY), killed when the test ends.
func MustStartReplica(tb testing.TB, primary *redisproc.Server) *redisproc.Server {
	tb.Helper()
	s, err := redisproc.Start(context.Background(), redisproc.Options{Dir: tb.TempDir(), Args: primary.ReplicaArgs()})
	if err != nil {
		tb.Fatalf("start a replica of %s: %v", primary.Addr(), err)
	}
	tb.Cleanup(func() { s.Kill() })
	return s
}
