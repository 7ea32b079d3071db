// Package redisaof cuts the tail of a stopped redis-server's append-only
// file the way a crash inside an fsync window loses it: the Redis tail-loss
// drills and the nemesis use it. It lives in the harness because nothing in
// a running pixelflow does this.
package redisaof

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// The append-only file of Redis 7 lives in a directory (appendonlydir): a
// base file (an RDB preamble or an AOF) written by the last rewrite, then
// incremental AOF files of commands in RESP, listed in order by a manifest
// ("file <name> seq <n> type <b|h|i>"). A script's effects (the relay's
// publish script) are written as MULTI, its writes, EXEC; a single write
// as itself. Commands are written when executed; with appendfsync
// everysec, up to about a second of them may never reach the disk, so a
// crash loses a suffix of the newest incr file. CutAOF reproduces exactly
// that.

// ErrShort is returned by CutAOF when the newest incr file holds fewer
// matching commands than asked (nothing is cut then).
var ErrShort = errors.New("the append-only file holds fewer matching commands than asked")

// Cut says what CutAOF removed.
type Cut struct {
	// File is the incr file that was cut.
	File string
	// Size and Kept are its length before and after, in bytes.
	Size, Kept int64
	// Units is how many units (single commands or MULTI…EXEC blocks) were
	// removed, Matched how many commands among them matched.
	Units, Matched int
	// Commands counts the removed commands by name (upper case).
	Commands map[string]int
	// Partial is the length of an incomplete last command (or unfinished
	// MULTI block) the file ended with: a SIGKILL between two write(2)
	// calls of one append. Redis drops it on load (aof-load-truncated);
	// the cut removes it first.
	Partial int64
}

func (c Cut) String() string {
	partial := ""
	if c.Partial > 0 {
		partial = fmt.Sprintf(" (and an incomplete last append of %d bytes)", c.Partial)
	}
	return fmt.Sprintf("cut %s from %d to %d bytes: %d units, %d matching commands, %v%s", filepath.Base(c.File), c.Size, c.Kept, c.Units, c.Matched, c.Commands, partial)
}

// aofUnit is one command, or a MULTI…EXEC block, of an AOF and where it
// starts.
type aofUnit struct {
	offset int64
	cmds   [][]string
}

// CutTail removes the newest writes of a stopped server's append-only file,
// as a crash inside an fsync window does: walking back from the end of the
// newest incr file unit by unit (a MULTI…EXEC block is one unit, so the
// file stays a valid AOF), it cuts until at least n commands for which
// match returns true are gone. The cut lands on a unit boundary, so
// redis-server loads the shorter file as a complete one (no reliance on
// aof-load-truncated). It fails, changing nothing, when the server is
// running, AOF is off, or the incr file holds fewer than n matching
// commands (after a rewrite they live in the base file and cannot be
// cut).
func CutTail(s *redisproc.Server, n int, match func(args []string) bool) (Cut, error) {
	if s.Pid() != 0 {
		return Cut{}, errors.New("cut AOF: the server is running (Kill it first)")
	}
	if !s.AppendOnly() {
		return Cut{}, errors.New("cut AOF: append-only persistence is off")
	}
	if n < 1 {
		return Cut{}, fmt.Errorf("cut AOF: n = %d, want ≥ 1", n)
	}
	file, err := newestIncr(filepath.Join(s.Dir(), "appendonlydir"))
	if err != nil {
		return Cut{}, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return Cut{}, fmt.Errorf("cut AOF: %w", err)
	}
	units, complete, err := parseAOF(data)
	if err != nil {
		return Cut{}, fmt.Errorf("cut AOF %s: %w", file, err)
	}
	cut := Cut{File: file, Size: int64(len(data)), Commands: map[string]int{}, Partial: int64(len(data)) - complete}
	i := len(units)
	for i > 0 && cut.Matched < n {
		i--
		for _, c := range units[i].cmds {
			if match(c) {
				cut.Matched++
			}
		}
	}
	if cut.Matched < n {
		return Cut{}, fmt.Errorf("cut AOF: %s holds %d matching commands, fewer than %d: %w", file, cut.Matched, n, ErrShort)
	}
	cut.Kept = units[i].offset
	for _, u := range units[i:] {
		cut.Units++
		for _, c := range u.cmds {
			cut.Commands[strings.ToUpper(c[0])]++
		}
	}
	if err := os.Truncate(file, cut.Kept); err != nil {
		return Cut{}, fmt.Errorf("cut AOF: %w", err)
	}
	return cut, nil
}

// newestIncr reads the manifest in dir and returns the path of its last
// incr file.
func newestIncr(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cut AOF: %w", err)
	}
	var manifest string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".manifest") {
			manifest = filepath.Join(dir, e.Name())
		}
	}
	if manifest == "" {
		return "", fmt.Errorf("cut AOF: no manifest in %s (redis-server before 7.0 keeps one appendonly.aof, not supported)", dir)
	}
	b, err := os.ReadFile(manifest)
	if err != nil {
		return "", fmt.Errorf("cut AOF: %w", err)
	}
	var incr string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "file" {
			continue
		}
		kv := map[string]string{}
		for i := 2; i+1 < len(f); i += 2 {
			kv[f[i]] = f[i+1]
		}
		if kv["type"] == "i" {
			incr = f[1]
		}
	}
	if incr == "" {
		return "", fmt.Errorf("cut AOF: manifest %s lists no incr file", manifest)
	}
	return filepath.Join(dir, incr), nil
}

// parseAOF splits an AOF (RESP arrays of bulk strings, and "#" annotation
// lines) into units. complete is where the complete units end: a file
// whose last command (or MULTI block) was cut short by a crash mid-append
// ends later. Anything else that is not RESP is an error.
func parseAOF(data []byte) (units []aofUnit, complete int64, err error) {
	units, err = parseUnits(data)
	var short *shortError
	if errors.As(err, &short) {
		return units, short.offset, nil
	}
	return units, int64(len(data)), err
}

// shortError: the data ended inside the unit starting at offset.
type shortError struct{ offset int64 }

func (e *shortError) Error() string { return fmt.Sprintf("incomplete unit at byte %d", e.offset) }

func parseUnits(data []byte) ([]aofUnit, error) {
	r := &countingReader{r: bufio.NewReader(bytes.NewReader(data))}
	var units []aofUnit
	var multi *aofUnit
	short := func(off int64) error {
		if multi != nil {
			off = multi.offset
		}
		return &shortError{offset: off}
	}
	for {
		off := r.n
		line, err := r.line()
		if errors.Is(err, io.EOF) && line == "" {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return units, short(off)
		}
		if err != nil {
			return nil, fmt.Errorf("at byte %d: %w", off, err)
		}
		if strings.HasPrefix(line, "#") { // annotation (timestamps)
			continue
		}
		if !strings.HasPrefix(line, "*") {
			return nil, fmt.Errorf("at byte %d: want a RESP array, got %q", off, line)
		}
		argc, err := strconv.Atoi(line[1:])
		if err != nil || argc < 1 {
			return nil, fmt.Errorf("at byte %d: bad array header %q", off, line)
		}
		args := make([]string, argc)
		for j := range args {
			h, err := r.line()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return units, short(off)
			}
			if err != nil {
				return nil, fmt.Errorf("at byte %d: %w", r.n, err)
			}
			size, err := strconv.Atoi(strings.TrimPrefix(h, "$"))
			if !strings.HasPrefix(h, "$") || err != nil || size < 0 {
				return nil, fmt.Errorf("at byte %d: bad bulk header %q", r.n, h)
			}
			buf := make([]byte, size+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return units, short(off)
			}
			if string(buf[size:]) != "\r\n" {
				return nil, fmt.Errorf("at byte %d: bulk string of %d bytes without CRLF", r.n, size)
			}
			args[j] = string(buf[:size])
		}
		switch name := strings.ToUpper(args[0]); {
		case name == "MULTI" && multi == nil:
			multi = &aofUnit{offset: off, cmds: [][]string{args}}
		case multi != nil:
			multi.cmds = append(multi.cmds, args)
			if name == "EXEC" {
				units = append(units, *multi)
				multi = nil
			}
		default:
			units = append(units, aofUnit{offset: off, cmds: [][]string{args}})
		}
	}
	if multi != nil {
		return units, &shortError{offset: multi.offset}
	}
	return units, nil
}

// countingReader reads RESP while counting the bytes consumed.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// line reads one CRLF-terminated line without its terminator.
func (c *countingReader) line() (string, error) {
	s, err := c.r.ReadString('\n')
	c.n += int64(len(s))
	if err != nil {
		if s != "" {
			return s, fmt.Errorf("line %q without CRLF: %w", s, io.ErrUnexpectedEOF)
		}
		return "", err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return "", fmt.Errorf("line %q without CRLF", s)
	}
	return s[:len(s)-2], nil
}
