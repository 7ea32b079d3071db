// Package report writes the files a long-running check leaves behind for a
// person: report.json for machines and report.html (one self-contained
// page) for people. The chaos drills and the load test both use it.
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Write saves data as dir/report.json and page executed with view as
// dir/report.html, creating dir.
func Write(dir string, data any, page *template.Template, view any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	b, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report.json: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return fmt.Errorf("write report.html: %w", err)
	}
	defer f.Close()
	if err := page.Execute(f, view); err != nil {
		return fmt.Errorf("render report.html: %w", err)
	}
	return f.Close()
}

// Commit names the source a report ran: the checkout's commit, with
// "+dirty" when it has uncommitted changes, so a figure can be traced to
// the code that made it; "unknown" outside a git checkout.
func Commit(ctx context.Context) string {
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(head))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}
