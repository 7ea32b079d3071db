// Package report writes the files a long-running check leaves behind for a
// person: report.json for machines and report.html (one self-contained
// page) for people. The chaos drills and the load test both use it.
package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
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
