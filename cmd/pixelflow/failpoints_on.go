//go:build failpoints

package main

import "github.com/pixelflow/pixelflow/internal/failpoint"

// failpointsBuilt says whether this binary can arm failpoints.
const failpointsBuilt = true

// failpoints returns the hook the store, the relay and the gateway call at
// their named places, armed from PIXELFLOW_FAILPOINTS and
// PIXELFLOW_FAILPOINTS_FILE (package failpoint); nil when neither is set.
func failpoints(getenv func(string) string) (func(string) error, error) {
	s, err := failpoint.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	return s.Func(), nil
}
