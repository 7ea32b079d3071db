package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/option"
	"github.com/pixelflow/pixelflow/internal/store"
)

// TestOptionsValidated: Validate refuses what the store cannot run with,
// naming the option, and Open refuses the same before opening anything.
func TestOptionsValidated(t *testing.T) {
	for _, tc := range []struct {
		opts  store.Options
		field string
	}{
		{store.Options{Canvas: "a/b"}, "Canvas"},
		{store.Options{Retention: 500 * time.Millisecond}, "Retention"},
		{store.Options{Retention: -time.Hour}, "Retention"},
		{store.Options{IdempotencyTTL: -time.Second}, "IdempotencyTTL"},
		{store.Options{TxnAttempts: -1}, "TxnAttempts"},
	} {
		err := tc.opts.Validate()
		var oe *option.Error
		if !errors.As(err, &oe) || oe.Component != "store" || oe.Field != tc.field {
			t.Errorf("%+v: %v, want a refusal of %s", tc.opts, err, tc.field)
		}
		path := t.TempDir() + "/never.lungo"
		if _, err := store.Open(context.Background(), "", path, tc.opts); err == nil {
			t.Errorf("%+v: Open accepted", tc.opts)
		}
	}
	if err := (store.Options{}).Validate(); err != nil {
		t.Errorf("zero options (all defaults) refused: %v", err)
	}
}
