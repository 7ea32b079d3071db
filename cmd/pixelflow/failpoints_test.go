package main

import (
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const failpointPkg = "github.com/pixelflow/pixelflow/internal/failpoint"

// TestProductionBuildLinksNoFailpoints: without -tags failpoints the binary
// does not import package failpoint at all; with it, it does (so the check
// is not vacuous).
func TestProductionBuildLinksNoFailpoints(t *testing.T) {
	deps := func(tags ...string) []string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.Fields(string(out))
	}
	if slices.Contains(deps(), failpointPkg) {
		t.Errorf("the production build of cmd/pixelflow depends on %s", failpointPkg)
	}
	if !slices.Contains(deps("-tags", "failpoints"), failpointPkg) {
		t.Errorf("the failpoints build of cmd/pixelflow does not depend on %s", failpointPkg)
	}
}

// TestFailpointHook checks the hook of the build under test: nil in the
// production build, which refuses failpoint settings with a clear error;
// armed in the failpoints build.
func TestFailpointHook(t *testing.T) {
	none := func(string) string { return "" }
	armed := func(k string) string {
		if k == "PIXELFLOW_FAILPOINTS" {
			return "relay:after-xadd=error"
		}
		return ""
	}
	fp, err := failpoints(none)
	if err != nil || fp != nil {
		t.Fatalf("with nothing set: hook %v, err %v; want nil, nil", fp != nil, err)
	}
	fp, err = failpoints(armed)
	if !failpointsBuilt {
		if err == nil || !strings.Contains(err.Error(), "-tags failpoints") {
			t.Fatalf("production build with PIXELFLOW_FAILPOINTS set: err %v, want a refusal naming the build tag", err)
		}
		return
	}
	if err != nil || fp == nil {
		t.Fatalf("failpoints build: hook %v, err %v", fp != nil, err)
	}
	if fp("relay:after-xadd") == nil {
		t.Fatal("armed failpoint did not fire")
	}
}

// TestGatewayGetsTheFailpointHook: the gateway role is handed the
// process's failpoint hook, so a drill can hold a gateway of the binary at
// gateway:before-group-create (or switch its fix off with
// gateway:keep-stale-group).
func TestGatewayGetsTheFailpointHook(t *testing.T) {
	seen := make(chan struct{})
	var once sync.Once
	hook := func(name string) error {
		if name == "gateway:before-group-create" {
			once.Do(func() { close(seen) })
		}
		return nil
	}
	runMainWith(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "fp-gw", "CANARY_INTERVAL": "0"},
		func(m *Main) { m.testFailpoint = hook }, "serve")
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway never called gateway:before-group-create: its Failpoint option is not wired")
	}
}
