package main

import (
	"bytes"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/internal/buildinfo"
	"github.com/pixelflow/pixelflow/internal/config"
)

// runCLI runs the command line in-process, as main does, with env as the
// environment.
func runCLI(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = cli(args, func(k string) string { return env[k] }, &o, &e)
	return code, o.String(), e.String()
}

// usageRoles returns the roles the usage lists, one per line under
// "roles:".
func usageRoles(t *testing.T, usage string) []string {
	t.Helper()
	_, list, ok := strings.Cut(usage, "\nroles:\n")
	if !ok {
		t.Fatalf("no roles: section in\n%s", usage)
	}
	line := regexp.MustCompile(`^  ([a-z]+) +\S`)
	var names []string
	for _, l := range strings.Split(list, "\n") {
		if l == "" {
			break
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("role line %q is not `  name  summary`", l)
		}
		names = append(names, m[1])
	}
	return names
}

// TestUsageListsEveryRole: pixelflow alone, -h, --help and help print the
// roles, one line each, on stdout, and exit 0; every server role and
// probe, version and help are among them.
func TestUsageListsEveryRole(t *testing.T) {
	for _, args := range [][]string{nil, {"-h"}, {"-help"}, {"--help"}, {"help"}, {"help", "-h"}} {
		code, out, errOut := runCLI(nil, args...)
		if code != 0 || errOut != "" {
			t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", args, code, errOut)
		}
		got := usageRoles(t, out)
		want := append(slices.Clone(config.Roles), "probe", "version", "help")
		if !slices.Equal(got, want) {
			t.Errorf("%q lists roles %q, want %q", args, got, want)
		}
	}
}

// TestEveryListedRoleAnswersHelp: each role the usage lists is one the
// command knows: ROLE -h and help ROLE print its usage and exit 0.
func TestEveryListedRoleAnswersHelp(t *testing.T) {
	_, out, _ := runCLI(nil)
	for _, r := range usageRoles(t, out) {
		for _, args := range [][]string{{r, "-h"}, {r, "--help"}, {"help", r}} {
			code, out, errOut := runCLI(nil, args...)
			if code != 0 || errOut != "" || !strings.Contains(out, "usage: pixelflow ") {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and a usage", args, code, out, errOut)
			}
		}
	}
}

// TestBadUsageExits2: an unknown role, a flag before the role, a bad
// flag or stray arguments print why and the usage on stderr, nothing on
// stdout, and exit 2.
func TestBadUsageExits2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"fly"}, `pixelflow: unknown role "fly"`},
		{[]string{"Serve"}, `unknown role "Serve"`},
		{[]string{"-port", "1"}, "the role comes first, before flags such as -port"},
		{[]string{"help", "fly"}, `unknown role "fly"`},
		{[]string{"help", "serve", "api"}, "help takes one role"},
		{[]string{"version", "now"}, `version takes no arguments, got ["now"]`},
		{[]string{"--version", "-x"}, "--version takes no arguments"},
	} {
		code, out, errOut := runCLI(nil, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "\nroles:\n") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing, and %q with the usage", tc.args, code, out, errOut, tc.want)
		}
	}
	code, out, errOut := runCLI(nil, "serve", "-bogus")
	if code != 2 || out != "" || !strings.Contains(errOut, "-bogus") || !strings.Contains(errOut, "pixelflow serve -h") {
		t.Errorf("serve -bogus: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI(map[string]string{"PORT": "abc"}, "api")
	if code != 2 || !strings.Contains(errOut, `invalid PORT (-port) "abc"`) {
		t.Errorf("PORT=abc: exit %d, stderr %q", code, errOut)
	}
}

// TestRoleHelpShowsTypesAndDefaults: serve -h names each flag's type, its
// variable and its built-in default, whatever the environment says.
func TestRoleHelpShowsTypesAndDefaults(t *testing.T) {
	code, out, _ := runCLI(map[string]string{"PORT": "9999", "LEASE_TTL": "1s"}, "serve", "-h")
	if code != 0 {
		t.Fatalf("serve -h: exit %d", code)
	}
	for _, want := range []string{"usage: pixelflow serve [flags]", "-port int (env PORT, default 8080)", "-lease-ttl duration (env LEASE_TTL, default 5s)", "-pprof bool (env PPROF, default false)", "-rate-limit float (env RATE_LIMIT, default 20)"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve -h lacks %q", want)
		}
	}
}

// TestVersion: version and --version print the build (buildinfo) and exit
// 0; an unstamped build, as tests are, says devel and unknown.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		code, out, errOut := runCLI(nil, arg)
		if code != 0 || errOut != "" || out != buildinfo.Read().String()+"\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, out, errOut)
		}
		if !strings.HasPrefix(out, "pixelflow ") || !strings.Contains(out, "\ncommit ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%s: %q lacks the version, commit or Go version", arg, out)
		}
	}
}
