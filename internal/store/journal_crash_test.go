package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

// The crash child's environment: the store file, the hook point to die at
// and at which of its calls.
const (
	crashEnvPath  = "PIXELFLOW_JOURNAL_CRASH_PATH"
	crashEnvPoint = "PIXELFLOW_JOURNAL_CRASH_POINT"
	crashEnvNth   = "PIXELFLOW_JOURNAL_CRASH_NTH"
)

// crashWrites bounds what one child writes: it must be killed before.
const crashWrites = 3000

// TestStoreFileSurvivesSIGKILL: every keyed placement acknowledged by a
// store on a file survives the process being SIGKILLed at any point of a
// commit or a compaction (lungo patch 10), and the file opens again whole.
// A child process (this test binary, run again) places keyed pixels from
// four goroutines with compaction at every chance (CompactAt -1) and
// prints each acknowledged one; it kills itself with SIGKILL at the nth
// call of a file store hook: with half a journal record written, after a
// record's fsync, with the new main file synced but not renamed, renamed
// beside the old journal, and after the new journal. The "timer" cases
// are killed by the parent once it has read nth acknowledgements, wherever
// the child then is.
// After each, the file opens; every acknowledged pixel is in the canvas,
// its key answers the first answer again without a write, a new write
// succeeds, and the file opens again after a clean close.
func TestStoreFileSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv(crashEnvPath); path != "" {
		crashChild(t, path, os.Getenv(crashEnvPoint), os.Getenv(crashEnvNth))
		return
	}
	cases := []struct{ point, nth string }{
		{"append:partial", "1"},
		{"append:partial", "37"},
		{"append:synced", "53"},
		{"compact:written", "1"}, // at the first open: the new file's main file
		{"compact:written", "8"},
		{"compact:renamed", "9"},
		{"compact:journal", "10"},
		{"timer", "40"},
		{"timer", "400"},
	}
	for _, c := range cases {
		t.Run(c.point+"#"+c.nth, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crash.lungo")
			acked := runCrashChild(t, path, c.point, c.nth)
			checkAcked(t, path, acked)
		})
	}
}

// ackedPixel is one acknowledged keyed placement of the child.
type ackedPixel struct {
	key string
	p   canvas.Placement
	id  string
}

func runCrashChild(t *testing.T, path, point, nth string) []ackedPixel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestStoreFileSurvivesSIGKILL$", "-test.count", "1")
	cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvPoint+"="+point, crashEnvNth+"="+nth)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAfter := -1
	if point == "timer" {
		killAfter, _ = strconv.Atoi(nth)
	}
	var acked []ackedPixel
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[0] != "ack" {
			continue
		}
		gx, _ := strconv.Atoi(f[2])
		gy, _ := strconv.Atoi(f[3])
		color, _ := strconv.ParseUint(f[4], 10, 32)
		acked = append(acked, ackedPixel{key: f[1], p: canvas.Placement{GX: gx, GY: gy, Color: canvas.Color(color)}, id: f[5]})
		if len(acked) == killAfter {
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not SIGKILLed (%v) after %d acknowledged writes; its stderr:\n%s", err, len(acked), stderr.String())
	}
	if len(acked) == 0 && nth != "1" {
		t.Fatalf("no acknowledged writes before the kill at %s #%s", point, nth)
	}
	t.Logf("killed at %s #%s after %d acknowledged writes", point, nth, len(acked))
	return acked
}

// crashChild is the child's side: write until the hook or the parent
// kills this process.
func crashChild(t *testing.T, path, point, nth string) {
	n, err := strconv.Atoi(nth)
	if err != nil {
		t.Fatalf("%s=%q: %v", crashEnvNth, nth, err)
	}
	var mu sync.Mutex
	calls := 0
	hook := func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == n {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	ctx := context.Background()
	s, _, err := store.OpenFile(ctx, path, store.Options{GroupCommit: 8}, lungo.FileStoreOptions{CompactAt: -1, Hook: hook})
	if err != nil {
		t.Fatalf("child open: %v", err)
	}
	var wg sync.WaitGroup
	var out sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < crashWrites; i += 4 {
				p := canvas.Placement{GX: i % 256, GY: i / 256, Color: canvas.Color(i*7919) & 0xFFFFFF}
				key := store.ScopedKey(fmt.Sprint("c", i%300), fmt.Sprint("k", i))
				ev, _, err := s.Place(ctx, p, key, store.Trace{})
				if err != nil {
					t.Errorf("child place: %v", err)
					return
				}
				out.Lock()
				fmt.Printf("ack %s %d %d %d %s\n", key, p.GX, p.GY, uint32(p.Color), ev.ID)
				out.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Errorf("the child wrote %d placements and was not killed (point %s #%s)", crashWrites, point, nth)
}

// checkAcked opens the file the child left and checks every acknowledged
// placement against it.
func checkAcked(t *testing.T, path string, acked []ackedPixel) {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, "", path, store.Options{})
	if err != nil {
		t.Fatalf("open after the kill: %v", err)
	}
	_, px, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	have := map[[2]int]canvas.Color{}
	for _, p := range px {
		have[[2]int{p.GX, p.GY}] = p.Color
	}
	for _, a := range acked {
		if c, ok := have[[2]int{a.p.GX, a.p.GY}]; !ok || c != a.p.Color {
			t.Errorf("acknowledged pixel %d,%d (%s) is %06x (present %v) after the kill, want %06x", a.p.GX, a.p.GY, a.key, uint32(c), ok, uint32(a.p.Color))
		}
		ev, replayed, err := s.Place(ctx, a.p, a.key, store.Trace{})
		if err != nil || !replayed || ev.ID != a.id {
			t.Errorf("key %s after the kill: replayed %v, event %s (first %s), %v", a.key, replayed, ev.ID, a.id, err)
		}
	}
	if len(px) > crashWrites {
		t.Errorf("%d pixels: more than were ever written", len(px))
	}
	if _, _, err := s.Place(ctx, place(255, 255, 0xABCDEF), "after", store.Trace{}); err != nil {
		t.Fatalf("a write after the kill: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(ctx, "", path, store.Options{})
	if err != nil {
		t.Fatalf("open after a clean close: %v", err)
	}
	defer s.Close(ctx)
	if _, px2, err := s.Snapshot(ctx); err != nil || len(px2) < len(acked)+1 {
		t.Fatalf("after a clean close: %d pixels, %v; want at least %d", len(px2), err, len(acked)+1)
	}
}
