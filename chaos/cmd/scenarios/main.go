// Command scenarios lists the names make chaos SCENARIO= takes, and turns
// one into its go test -run pattern, refusing a name no drill has. The
// Makefile calls it so that the names live in the Go code (chaos.Selections)
// and nowhere else.
//
//	go run ./chaos/cmd/scenarios            # the list, one name a line with what it does
//	go run ./chaos/cmd/scenarios -run NAME  # NAME's -run pattern; exit 2 with the list if unknown
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pixelflow/pixelflow/chaos"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the command; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("run", "", "print the go test -run pattern of this SCENARIO (empty: every drill)")
	asked := false
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fs.Visit(func(f *flag.Flag) { asked = asked || f.Name == "run" })
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "scenarios: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if !asked {
		list(stdout)
		return 0
	}
	p, err := chaos.RunPattern(*name)
	if err != nil {
		fmt.Fprintf(stderr, "make chaos: %v\n\n", err)
		list(stderr)
		return 2
	}
	fmt.Fprintln(stdout, p)
	return 0
}

// list prints every name with what it does.
func list(w io.Writer) {
	fmt.Fprintln(w, "make chaos SCENARIO=<name> runs one of these (no SCENARIO: every drill):")
	for _, r := range chaos.Selections() {
		fmt.Fprintf(w, "  %-22s %s\n", r.Name, r.Doc)
	}
}
