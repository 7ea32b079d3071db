package chaos

import (
	"context"
	"slices"
	"time"
)

// Shrink looks for a smaller schedule that still fails, within budget:
// first it drops faults (delta debugging: halves, then quarters, … then
// single faults), then it halves each remaining fault's hold, then it
// moves the faults as early as their order allows and trims the duration
// to the last heal. fails runs a candidate (a fresh cluster each time) and
// reports whether it failed the same way; an error stops the search. It
// returns the smallest failing schedule found and how many runs it took.
//
// A run that passes by chance (timing) only makes the result larger than
// the minimum, never a schedule that does not fail: every schedule it
// returns failed when it ran.
func Shrink(ctx context.Context, s Schedule, budget time.Duration, fails func(context.Context, Schedule) (bool, error), logf func(string, ...any)) (Schedule, int, error) {
	deadline := time.Now().Add(budget)
	runs := 0
	try := func(c Schedule) (bool, error) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false, nil
		}
		runs++
		f, err := fails(ctx, c)
		if err == nil {
			mark := "passes"
			if f {
				mark = "still fails"
			}
			logf("shrink run %d (%d faults, %.1fs): %s", runs, len(c.Faults), c.Duration, mark)
		}
		return f, err
	}
	// 1. Drop faults.
	n := 2
	for len(s.Faults) >= 2 && time.Now().Before(deadline) {
		chunks := split(s.Faults, n)
		reduced := false
		for i := range chunks {
			c := s
			c.Faults = without(chunks, i)
			f, err := try(c)
			if err != nil {
				return s, runs, err
			}
			if f {
				s, reduced = c, true
				n = max(n-1, 2)
				break
			}
		}
		if !reduced {
			if n >= len(s.Faults) {
				break
			}
			n = min(2*n, len(s.Faults))
		}
	}
	if len(s.Faults) == 1 {
		c := s
		c.Faults = nil
		if f, err := try(c); err != nil {
			return s, runs, err
		} else if f {
			s = c
		}
	}
	// 2. Shorten windows.
	for i := range s.Faults {
		for s.Faults[i].Hold >= 0.6 && time.Now().Before(deadline) {
			c := s
			c.Faults = slices.Clone(s.Faults)
			c.Faults[i].Hold = round(c.Faults[i].Hold / 2)
			f, err := try(c)
			if err != nil {
				return s, runs, err
			}
			if !f {
				break
			}
			s = c
		}
	}
	// 3. Move everything early and trim the duration: a shorter run
	// replays faster. Gaps between faults are kept (timing may matter).
	if len(s.Faults) > 0 && time.Now().Before(deadline) {
		first := s.Faults[0].At
		for _, p := range s.Faults {
			first = min(first, p.At)
		}
		c := s
		c.Faults = slices.Clone(s.Faults)
		last := 0.0
		for i := range c.Faults {
			c.Faults[i].At = round(c.Faults[i].At - first + 0.5)
			last = max(last, c.Faults[i].End())
		}
		c.Duration = round(last + 0.5)
		if c.Duration < s.Duration {
			f, err := try(c)
			if err != nil {
				return s, runs, err
			}
			if f {
				s = c
			}
		}
	}
	return s, runs, nil
}

// split cuts ps into n chunks of near-equal length, in order.
func split(ps []Planned, n int) [][]Planned {
	n = min(n, len(ps))
	out := make([][]Planned, 0, n)
	for i := range n {
		out = append(out, ps[i*len(ps)/n:(i+1)*len(ps)/n])
	}
	return out
}

// without joins every chunk but the i-th.
func without(chunks [][]Planned, i int) []Planned {
	var out []Planned
	for j, c := range chunks {
		if j != i {
			out = append(out, c...)
		}
	}
	return out
}
