package chaos

import (
	"slices"
	"testing"
)

// TestContainerDrillsAreDrills: every name make chaos-docker runs is a
// drill, so a renamed drill fails here instead of quietly dropping out of
// the docker run's pattern.
func TestContainerDrillsAreDrills(t *testing.T) {
	var names []string
	for _, sc := range Scenarios() {
		names = append(names, sc.Name)
	}
	for _, n := range ContainerDrills() {
		if !slices.Contains(names, n) {
			t.Errorf("ContainerDrills names %q, which is no drill (%v)", n, names)
		}
	}
	if _, err := RunPattern("containers"); err != nil {
		t.Error(err)
	}
}
