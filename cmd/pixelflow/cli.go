package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/pixelflow/pixelflow/internal/buildinfo"
	"github.com/pixelflow/pixelflow/internal/config"
)

// role is one subcommand, as the usage lists it.
type role struct{ name, summary string }

// roles are the subcommands, in the order the usage lists them: the server
// roles (config.Roles) first, then the command's own.
func roles() []role {
	return []role{
		{"serve", "api + relay + gateway in one process (embedded store and a private redis-server unless MONGO_URI/REDIS_URL say otherwise)"},
		{"api", "HTTP write path and snapshot (+ the relay, on the embedded store)"},
		{"relay", "outbox → Redis stream sequencer (needs MONGO_URI)"},
		{"gateway", "Redis stream → WebSocket fan-out, the page and /ops"},
		{"probe", "GET /readyz of a running pixelflow; exit 0 when ready (container healthchecks)"},
		{"version", "print the version, the commit it was built from and the Go version"},
		{"help", "print this list; pixelflow help ROLE (or ROLE -h) lists a role's flags"},
	}
}

// usage is what pixelflow, -h, --help and help print.
func usage(w io.Writer) {
	fmt.Fprintln(w, "pixelflow: a shared pixel canvas server. One binary, one role per process.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: pixelflow ROLE [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "roles:")
	for _, r := range roles() {
		fmt.Fprintf(w, "  %-8s %s\n", r.name, r.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "pixelflow ROLE -h lists a role's flags, their types, variables and defaults.")
	fmt.Fprintln(w, "pixelflow --version is pixelflow version.")
}

func probeUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: pixelflow probe [url]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "GET url (default http://127.0.0.1:$PORT/readyz, PORT default 8080) and exit 0")
	fmt.Fprintln(w, "when it answers 200 within 3 seconds, else print why and exit 1.")
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// cli runs the command line args (without the program name) and returns
// the exit status: 0 done, 1 failed, 2 bad usage. Usage asked for goes to
// stdout; usage given after a mistake goes to stderr with the mistake.
func cli(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	name := ""
	if len(args) > 0 {
		name = args[0]
	}
	switch {
	case name == "" || name == "help" && len(args) == 1 || isHelp(name) && len(args) == 1:
		usage(stdout)
		return 0
	case name == "help" && isHelp(args[1]):
		usage(stdout)
		return 0
	case name == "help":
		if len(args) > 2 {
			return badUsage(stderr, fmt.Sprintf("help takes one role, got %q", args[1:]))
		}
		return help(args[1], stdout, stderr)
	case name == "version" || name == "-version" || name == "--version":
		if len(args) > 1 {
			if len(args) == 2 && isHelp(args[1]) {
				fmt.Fprintln(stdout, "usage: pixelflow version")
				return 0
			}
			return badUsage(stderr, fmt.Sprintf("%s takes no arguments, got %q", name, args[1:]))
		}
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	case name == "probe":
		if len(args) == 2 && isHelp(args[1]) {
			probeUsage(stdout)
			return 0
		}
		if err := probe(context.Background(), args[1:], getenv); err != nil {
			fmt.Fprintln(stderr, "pixelflow probe:", err)
			return 1
		}
		return 0
	case slices.Contains(config.Roles, name):
		return server(args, getenv, stdout, stderr)
	case strings.HasPrefix(name, "-"):
		return badUsage(stderr, fmt.Sprintf("the role comes first, before flags such as %s", name))
	default:
		return badUsage(stderr, fmt.Sprintf("unknown role %q", name))
	}
}

// help is pixelflow help ROLE: that role's usage.
func help(name string, stdout, stderr io.Writer) int {
	switch {
	case slices.Contains(config.Roles, name):
		config.FlagUsage(stdout, name)
	case name == "probe":
		probeUsage(stdout)
	case name == "version":
		fmt.Fprintln(stdout, "usage: pixelflow version")
	case name == "help":
		usage(stdout)
	default:
		return badUsage(stderr, fmt.Sprintf("unknown role %q", name))
	}
	return 0
}

func badUsage(stderr io.Writer, why string) int {
	fmt.Fprintf(stderr, "pixelflow: %s\n\n", why)
	usage(stderr)
	return 2
}

// server runs a server role until SIGINT or SIGTERM, or until serving
// fails.
func server(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	m := NewMain()
	m.LogOutput = stderr
	if err := m.ParseFlags(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.FlagUsage(stdout, args[0])
			return 0
		}
		fmt.Fprintln(stderr, "pixelflow:", err)
		return 2
	}
	applyGCDefaults(getenv, os.ReadFile)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "pixelflow:", err)
		_ = m.Close()
		return 1
	}
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down", "role", m.Config.Role)
	case <-m.Done(): // serving failed: Close reports why
	}
	stop()
	if err := m.Close(); err != nil {
		fmt.Fprintln(stderr, "pixelflow: shutdown:", err)
		return 1
	}
	return 0
}
