package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestFromBuildInfo: a stamped build reports its module version, revision
// and modification; an unstamped one (-buildvcs=false, go run, tests)
// says devel and unknown instead of leaving the fields empty.
func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/pixelflow/pixelflow", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want Info
	}{
		{"stamped", stamped, true, Info{Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567", Modified: true, GoVersion: "go1.99.1"}},
		{"devel, no vcs", &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}}, true, Info{Version: Devel, Revision: Unknown, GoVersion: "go1.99.1"}},
		{"clean tree", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}, true, Info{Version: Devel, Revision: "abc", GoVersion: runtime.Version()}},
		{"no build info", nil, false, Info{Version: Devel, Revision: Unknown, GoVersion: runtime.Version()}},
	} {
		if got := FromBuildInfo(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestString: pixelflow version prints version, commit (modified or not)
// and Go version, each on its own line.
func TestString(t *testing.T) {
	got := Info{Version: "v1.2.3", Revision: "abc", Modified: true, GoVersion: "go1.99.1"}.String()
	for _, want := range []string{"pixelflow v1.2.3\n", "commit     abc (modified)\n", "go         go1.99.1 " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := (Info{Version: Devel, Revision: Unknown, GoVersion: "go1.99.1"}).String(); strings.Contains(got, "modified") || !strings.Contains(got, "commit     unknown\n") {
		t.Errorf("unstamped: %q", got)
	}
}

// TestCollector: pixelflow_build_info is 1 with the build in its labels,
// the revision marked +dirty when the tree was modified.
func TestCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(Info{Version: "v1.2.3", Revision: "abc", Modified: true, GoVersion: "go1.99.1"}.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "pixelflow_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one pixelflow_build_info series", mfs)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	want := map[string]string{"version": "v1.2.3", "revision": "abc+dirty", "goversion": "go1.99.1"}
	if len(labels) != len(want) || m.GetGauge().GetValue() != 1 {
		t.Errorf("labels %v value %v, want %v and 1", labels, m.GetGauge().GetValue(), want)
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, labels[k], v)
		}
	}
	if got := (Info{Revision: Unknown, Modified: true}).RevisionLabel(); got != Unknown {
		t.Errorf("unknown revision, modified: %q", got)
	}
}
