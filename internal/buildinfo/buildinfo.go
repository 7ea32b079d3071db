// Package buildinfo says which build of pixelflow is running: the version
// and commit the Go toolchain stamped into the binary
// (runtime/debug.ReadBuildInfo), for pixelflow version, the startup log
// line and the pixelflow_build_info gauge. A build without that stamp
// (go build -buildvcs=false, go run, tests) says "devel" and "unknown"
// rather than nothing, so a line or a series is never missing a field.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Unknown stands for a field the binary does not carry.
const Unknown = "unknown"

// Devel is the version of a build from a working tree rather than a
// released module (Go says "(devel)").
const Devel = "devel"

// Info is one build's identity.
type Info struct {
	Version   string // module version, or Devel
	Revision  string // vcs.revision, or Unknown
	Modified  bool   // vcs.modified: built from a tree with uncommitted changes
	GoVersion string // toolchain that built it
}

// Read returns the running binary's Info.
func Read() Info { return FromBuildInfo(debug.ReadBuildInfo()) }

// FromBuildInfo turns what debug.ReadBuildInfo returned into an Info,
// filling what is missing.
func FromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	i := Info{Version: Devel, Revision: Unknown, GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return i
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		i.Version = v
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				i.Revision = s.Value
			}
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// RevisionLabel is the revision with "+dirty" when the tree had
// uncommitted changes (Go's own marking of such versions): one value that
// says both, for the log line and the gauge's label.
func (i Info) RevisionLabel() string {
	if i.Modified && i.Revision != Unknown {
		return i.Revision + "+dirty"
	}
	return i.Revision
}

// String is what pixelflow version prints.
func (i Info) String() string {
	mod := ""
	if i.Modified {
		mod = " (modified)"
	}
	return fmt.Sprintf("pixelflow %s\ncommit     %s%s\ngo         %s %s/%s", i.Version, i.Revision, mod, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// Collector is the pixelflow_build_info gauge: always 1, the build in its
// labels (the Prometheus convention for a build, so a dashboard can join
// it onto any other series by instance).
func (i Info) Collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pixelflow_build_info",
		Help: "The running build: its version, vcs revision (+dirty when built from a modified tree) and Go version; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.RevisionLabel(),
			"goversion": i.GoVersion,
		},
	}, func() float64 { return 1 })
}
