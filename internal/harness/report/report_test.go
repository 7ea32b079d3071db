package report

import (
	"html/template"
	"os"
	"os/exec"
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

// TestCommitNamesTheCheckout: in a fresh repository the commit is HEAD's
// short hash, "+dirty" once a tracked file changes; outside one, unknown.
func TestCommitNamesTheCheckout(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if c := Commit(t.Context()); c != "unknown" {
		t.Fatalf("outside a checkout: %q, want unknown", c)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	if err := os.WriteFile("f", []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "f")
	git("commit", "-qm", "one")
	head := git("rev-parse", "--short=12", "HEAD")
	if c := Commit(t.Context()); c != head {
		t.Fatalf("clean checkout: %q, want %q", c, head)
	}
	if err := os.WriteFile("f", []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := Commit(t.Context()); c != head+"+dirty" {
		t.Fatalf("changed checkout: %q, want %q", c, head+"+dirty")
	}
}
