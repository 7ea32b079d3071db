package report

import (
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteBothFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	page := template.Must(template.New("p").Parse(`<p>{{.}}</p>`))
	if err := Write(dir, map[string]int{"lost": 0}, page, "a<b"); err != nil {
		t.Fatal(err)
	}
	j, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	h, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(j), `"lost": 0`) || string(h) != "<p>a&lt;b</p>" {
		t.Fatalf("json %s html %s", j, h)
	}
	bad := template.Must(template.New("p").Parse(`{{.Nope}}`))
	if err := Write(dir, 1, bad, "x"); err == nil {
		t.Fatal("a template error was not reported")
	}
}
