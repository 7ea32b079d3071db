package main

import (
	"os"
	"regexp"
	"testing"
)

// TestModuleInstallsWithGoInstall: `go install
// github.com/pixelflow/pixelflow/cmd/pixelflow@version` refuses a module
// whose go.mod has replace (or exclude) directives, so the patched lungo
// is part of this module rather than a replaced dependency.
func TestModuleInstallsWithGoInstall(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^\s*(replace|exclude)\b.*$`).FindAll(b, -1); len(m) > 0 {
		t.Errorf("go.mod has directives go install refuses: %q", m)
	}
}
