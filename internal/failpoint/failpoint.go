// Package failpoint turns the named places where pixelflow's packages call
// an optional Failpoint(name) hook (store.Options, relay.Options,
// gateway.Options) into
// faults a test can arm in a real, running process: return an error there,
// die there (SIGKILL, as a crash at exactly that point), or stall there.
//
// Only a binary built with `-tags failpoints` links this package
// (cmd/pixelflow's failpoints_on.go); the production build's hook is nil and
// contains none of it. The e2e suites and the chaos drills build with the
// tag.
//
// A process reads its failpoints from two places:
//
//   - PIXELFLOW_FAILPOINTS, at start: "name=action;name=action".
//   - PIXELFLOW_FAILPOINTS_FILE, a file re-read whenever it changes (its
//     size, modification time or inode), checked at every hit: a drill arms
//     a failpoint at a chosen moment by writing the file (atomically:
//     write, then rename). Its entries override the environment's for the
//     same name. A missing file arms nothing.
//
// Actions: "on" or "error" (every hit returns an error), "crash" (SIGKILL
// this process at the hit), "sleep(DURATION)" (stall the hit, then go on),
// "off" (disarm). Any of on, error, crash and sleep may be limited to the
// Nth hit with "@N" ("crash@3": the third hit after the rule was armed
// crashes; the others pass). Hits are counted per name from the moment its
// rule was (re)armed.
package failpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables a process reads its failpoints from.
const (
	EnvSpec = "PIXELFLOW_FAILPOINTS"
	EnvFile = "PIXELFLOW_FAILPOINTS_FILE"
)

// ErrInjected is wrapped by every error a failpoint returns.
var ErrInjected = errors.New("injected by failpoint")

// Kind is what an armed failpoint does.
type Kind int

// Kinds of action.
const (
	Off Kind = iota
	Error
	Crash
	Sleep
)

func (k Kind) String() string {
	switch k {
	case Error:
		return "error"
	case Crash:
		return "crash"
	case Sleep:
		return "sleep"
	}
	return "off"
}

// Action is one failpoint's rule.
type Action struct {
	Kind Kind
	// Nth, when > 0, fires the action on the Nth hit only.
	Nth int
	// Sleep is how long a Sleep action stalls.
	Sleep time.Duration
}

func (a Action) String() string {
	s := a.Kind.String()
	if a.Kind == Sleep {
		s = "sleep(" + a.Sleep.String() + ")"
	}
	if a.Nth > 0 {
		s += "@" + strconv.Itoa(a.Nth)
	}
	return s
}

// Parse reads a spec: rules "name=action[@N]" separated by ';' or newlines;
// blank lines and lines starting with '#' are ignored. An "off" rule maps
// the name to an Off action (it disarms what the environment armed).
func Parse(spec string) (map[string]Action, error) {
	out := map[string]Action{}
	for _, line := range strings.Split(spec, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, rule := range strings.Split(line, ";") {
			rule = strings.TrimSpace(rule)
			if rule == "" {
				continue
			}
			name, act, ok := strings.Cut(rule, "=")
			name, act = strings.TrimSpace(name), strings.TrimSpace(act)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("failpoint rule %q: want name=action", rule)
			}
			a, err := parseAction(act)
			if err != nil {
				return nil, fmt.Errorf("failpoint rule %q: %w", rule, err)
			}
			out[name] = a
		}
	}
	return out, nil
}

func parseAction(s string) (Action, error) {
	var a Action
	if base, nth, ok := strings.Cut(s, "@"); ok {
		n, err := strconv.Atoi(nth)
		if err != nil || n < 1 {
			return a, fmt.Errorf("@%s: want a hit number ≥ 1", nth)
		}
		a.Nth, s = n, base
	}
	switch {
	case s == "on" || s == "error":
		a.Kind = Error
	case s == "crash":
		a.Kind = Crash
	case s == "off":
		if a.Nth > 0 {
			return a, errors.New("off takes no @N")
		}
		a.Kind = Off
	case strings.HasPrefix(s, "sleep(") && strings.HasSuffix(s, ")"):
		d, err := time.ParseDuration(s[len("sleep(") : len(s)-1])
		if err != nil || d <= 0 {
			return a, fmt.Errorf("%s: want sleep(positive duration)", s)
		}
		a.Kind, a.Sleep = Sleep, d
	default:
		return a, fmt.Errorf("unknown action %q (want on, error, crash, sleep(d), off, optionally @N)", s)
	}
	return a, nil
}

// Set is a process's failpoints. Hit is safe for concurrent use.
type Set struct {
	env  map[string]Action
	file string
	// crash ends the process; a test replaces it.
	crash func()
	log   io.Writer

	mu    sync.Mutex
	stamp fileStamp
	fromF map[string]Action
	rules map[string]Action
	hits  map[string]int
}

type fileStamp struct {
	info os.FileInfo
}

func (a fileStamp) same(b os.FileInfo) bool {
	if a.info == nil || b == nil {
		return a.info == nil && b == nil
	}
	return os.SameFile(a.info, b) && a.info.Size() == b.Size() && a.info.ModTime().Equal(b.ModTime())
}

// FromEnv reads PIXELFLOW_FAILPOINTS and PIXELFLOW_FAILPOINTS_FILE through
// getenv. It returns nil (no failpoints) when neither is set, and an error
// for a spec that does not parse.
func FromEnv(getenv func(string) string) (*Set, error) {
	spec, file := getenv(EnvSpec), getenv(EnvFile)
	if spec == "" && file == "" {
		return nil, nil
	}
	env, err := Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSpec, err)
	}
	s := &Set{env: env, file: file, crash: crashSelf, log: os.Stderr, hits: map[string]int{}}
	s.rules = merge(env, nil)
	if file != "" {
		s.mu.Lock()
		err := s.reloadLocked()
		s.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvFile, err)
		}
	}
	return s, nil
}

func merge(env, file map[string]Action) map[string]Action {
	out := make(map[string]Action, len(env)+len(file))
	for n, a := range env {
		out[n] = a
	}
	for n, a := range file {
		out[n] = a
	}
	for n, a := range out {
		if a.Kind == Off {
			delete(out, n)
		}
	}
	return out
}

// reloadLocked re-reads the file if it changed. A rule whose action
// changed starts counting hits afresh.
func (s *Set) reloadLocked() error {
	if s.file == "" {
		return nil
	}
	info, err := os.Stat(s.file)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		info = nil
	}
	if s.stamp.same(info) {
		return nil
	}
	var fromF map[string]Action
	if info != nil {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return err
		}
		if fromF, err = Parse(string(b)); err != nil {
			s.stamp = fileStamp{info: info} // said once, not at every hit
			return err
		}
	}
	s.stamp = fileStamp{info: info}
	s.fromF = fromF
	next := merge(s.env, fromF)
	for n, a := range next {
		if old, ok := s.rules[n]; !ok || old != a {
			delete(s.hits, n)
			fmt.Fprintf(s.log, "pixelflow failpoint: %s armed: %s\n", n, a)
		}
	}
	for n := range s.rules {
		if _, ok := next[n]; !ok {
			delete(s.hits, n)
			fmt.Fprintf(s.log, "pixelflow failpoint: %s disarmed\n", n)
		}
	}
	s.rules = next
	return nil
}

// Hit is the hook: it returns nil unless name is armed and fires now.
func (s *Set) Hit(name string) error {
	s.mu.Lock()
	if err := s.reloadLocked(); err != nil {
		// A broken file arms nothing new and is said loudly; the rules in
		// force stay.
		fmt.Fprintf(s.log, "pixelflow failpoint: %s %s: %v (rules unchanged)\n", EnvFile, s.file, err)
	}
	a, ok := s.rules[name]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	s.hits[name]++
	n := s.hits[name]
	s.mu.Unlock()
	if a.Nth > 0 && n != a.Nth {
		return nil
	}
	fmt.Fprintf(s.log, "pixelflow failpoint: %s fires %s (hit %d)\n", name, a, n)
	switch a.Kind {
	case Crash:
		s.crash()
	case Sleep:
		time.Sleep(a.Sleep)
		return nil
	}
	return fmt.Errorf("failpoint %s (hit %d): %w", name, n, ErrInjected)
}

// Func returns s.Hit, or nil for a nil Set (no failpoints armed): the
// Failpoint options of store and relay then stay nil.
func (s *Set) Func() func(string) error {
	if s == nil {
		return nil
	}
	return s.Hit
}

// crashSelf ends this process at once, as a crash: no deferred function,
// no shutdown, no flush.
func crashSelf() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; wait for it to land
}
