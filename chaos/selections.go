package chaos

import (
	"fmt"
	"regexp"
	"strings"
)

// A Selection is one name make chaos SCENARIO= takes: a drill of Scenarios, or
// one of the runs that are no single drill (the nemesis and its replay and
// teeth).
type Selection struct {
	Name string
	// Pattern is the go test -run pattern that runs it in ./chaos.
	Pattern string
	Doc     string
}

// AllDrills is the go test -run pattern of make chaos without SCENARIO:
// every drill, and the check that the drills catch planted bugs.
const AllDrills = "TestChaos|TestDrillsHaveTeeth"

// Selections lists every name make chaos SCENARIO= takes: the drills in the
// order make chaos runs them, then the nemesis runs. make chaos reads it
// (chaos/cmd/scenarios), so a name is known in one place.
func Selections() []Selection {
	var runs []Selection
	for _, sc := range Scenarios() {
		runs = append(runs, Selection{Name: sc.Name, Pattern: "TestChaos/^" + regexp.QuoteMeta(sc.Name) + "$", Doc: sc.Doc})
	}
	return append(runs,
		Selection{Name: "containers", Pattern: "TestChaos/^(" + strings.Join(ContainerDrills(), "|") + ")$", Doc: "The drills that take real container faults on the docker provider (E2E_PROVIDER=docker; make chaos-docker): network disconnects, docker kill and restart, the cgroup freezer."},
		Selection{Name: "nemesis", Pattern: "^TestNemesis$", Doc: "A seeded random schedule of overlapping faults (SEED=n, DURATION=2m, NEMESIS_MAX_CONCURRENT=2; NEMESIS_REDIS=sentinel adds the failover faults), judged by the history checker and shrunk when it fails."},
		Selection{Name: "replay", Pattern: "^TestNemesis$", Doc: "Replays one nemesis schedule exactly (SCHEDULE=path/schedule.json)."},
		Selection{Name: "nemesis-teeth", Pattern: "^TestNemesisTeeth$", Doc: "A planted bug must be found by the nemesis and shrunk."},
		Selection{Name: "nemesis-teeth-rejoin", Pattern: "^TestNemesisTeethRejoin$", Doc: "The rejoin race of issue 28 item 1, its fix switched off, must be found by the nemesis with its hold faults and shrunk."},
	)
}

// ContainerDrills are the drills make chaos-docker runs on the docker
// provider: the network disconnects only a container can take, and the
// kills, restarts and pauses that there hit containers (docker kill,
// docker run, docker pause) instead of processes.
func ContainerDrills() []string {
	return []string{"container-disconnect-gateway", "container-disconnect-api", "gateway-kill", "api-crash", "gateway-pause", "redis-kill", "redis-pause"}
}

// RunPattern is the go test -run pattern for make chaos SCENARIO=name ("":
// AllDrills). An unknown name is an error that lists the known ones, so a
// typo fails instead of passing on "no tests to run".
func RunPattern(name string) (string, error) {
	if name == "" {
		return AllDrills, nil
	}
	runs := Selections()
	names := make([]string, len(runs))
	for i, r := range runs {
		if r.Name == name {
			return r.Pattern, nil
		}
		names[i] = r.Name
	}
	return "", fmt.Errorf("unknown SCENARIO %q; known: %s", name, strings.Join(names, ", "))
}
