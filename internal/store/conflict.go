package store

import (
	"context"

	"github.com/pixelflow/pixelflow/third_party/lungo"
)

// ConflictModel stands in for MongoDB's document-level write conflicts,
// which the embedded engine never raises (it runs one write transaction at a
// time), so tests and benchmarks can measure what a hot tile costs on a
// replica set. txn calls Begin when a transaction attempt starts (before it
// waits for the engine) and End when it committed or aborted; Place calls
// Write before it writes a tile document. An error from Write is returned
// from there as MongoDB's WriteConflict would be (labelled
// TransientTransactionError): the attempt aborts and txn retries it.
type ConflictModel interface {
	Begin() ConflictAttempt
}

// ConflictAttempt is one transaction attempt as a ConflictModel sees it.
type ConflictAttempt interface {
	// Write is called before the attempt writes document doc
	// ("<collection>/<id>").
	Write(doc string) error
	// End is called once, when the attempt committed or aborted.
	End(committed bool)
}

type attemptKey struct{}

// beginAttempt tells the conflict model (if any) that a transaction attempt
// starts, and returns the context that carries it to conflictWrite.
func (s *Store) beginAttempt(ctx context.Context) (context.Context, ConflictAttempt) {
	if s.opts.Conflicts == nil {
		return ctx, nil
	}
	a := s.opts.Conflicts.Begin()
	return context.WithValue(ctx, attemptKey{}, a), a
}

// conflictWrite asks the conflict model whether the attempt running in sc
// may write doc now.
func (s *Store) conflictWrite(sc lungo.ISessionContext, coll, id string) error {
	if s.opts.Conflicts == nil {
		return nil
	}
	if a, ok := sc.Value(attemptKey{}).(ConflictAttempt); ok {
		return a.Write(coll + "/" + id)
	}
	return nil
}
