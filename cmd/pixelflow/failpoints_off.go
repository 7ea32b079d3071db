//go:build !failpoints

package main

import "fmt"

// failpointsBuilt says whether this binary can arm failpoints: the
// production build cannot, and links none of package failpoint.
const failpointsBuilt = false

// failpoints is nil in the production build. Asking it for failpoints is
// an error rather than a quiet no-op, so a drill run against the wrong
// binary fails instead of passing without its fault.
func failpoints(getenv func(string) string) (func(string) error, error) {
	for _, k := range []string{"PIXELFLOW_FAILPOINTS", "PIXELFLOW_FAILPOINTS_FILE"} {
		if getenv(k) != "" {
			return nil, fmt.Errorf("%s is set, but this pixelflow was built without failpoints (go build -tags failpoints)", k)
		}
	}
	return nil, nil
}
