// Package canvas holds pixelflow's domain: pixels, colours, the events that
// carry them and the stream positions that order those events. It does no I/O;
// the store, relay, api and gateway packages are adapters around it.
package canvas

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Color is a 24-bit RGB colour.
type Color uint32

// ParseColor accepts exactly "#RRGGBB" (hex digits in either case).
func ParseColor(s string) (Color, error) {
	if len(s) != 7 || s[0] != '#' {
		return 0, Errorf(EInvalid, "color must look like #RRGGBB, got %q", truncate(s, 16))
	}
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if err != nil {
		return 0, Errorf(EInvalid, "color must look like #RRGGBB, got %q", truncate(s, 16))
	}
	return Color(v), nil
}

// String renders the colour as "#RRGGBB" in upper case.
func (c Color) String() string { return fmt.Sprintf("#%06X", uint32(c)&0xFFFFFF) }

// RGB splits the colour into its channels.
func (c Color) RGB() (r, g, b byte) { return byte(c >> 16), byte(c >> 8), byte(c) }

// Size is a canvas's extent in pixels.
type Size struct {
	Width, Height int
}

// Contains reports whether (gx, gy) lies on the canvas.
func (s Size) Contains(gx, gy int) bool {
	return gx >= 0 && gy >= 0 && gx < s.Width && gy < s.Height
}

// Validate rejects sizes that are empty or too large to snapshot in one response.
func (s Size) Validate() error {
	if s.Width < 1 || s.Height < 1 || s.Width > MaxSide || s.Height > MaxSide {
		return Errorf(EInvalid, "canvas size %dx%d out of range 1..%d", s.Width, s.Height, MaxSide)
	}
	return nil
}

// MaxSide is the largest canvas width or height.
const MaxSide = 4096

// Placement is a validated request to paint one pixel.
type Placement struct {
	GX, GY int
	Color  Color
}

// Validate checks the placement against the canvas bounds.
func (p Placement) Validate(size Size) error {
	if !size.Contains(p.GX, p.GY) {
		return Errorf(EInvalid, "pixel (%d,%d) is outside the %dx%d canvas", p.GX, p.GY, size.Width, size.Height)
	}
	return nil
}

// Kind tells pixel events from the canary that proves the pipeline flows.
type Kind string

const (
	KindPixel  Kind = "pixel"
	KindCanary Kind = "canary"
)

// Event is one committed change, as it travels outbox → stream → gateway →
// client. Version is the pixel's version after the change: clients apply an
// event only if it is newer than what they hold, which makes duplicates and
// reordering harmless.
type Event struct {
	ID          string    `json:"id"` // outbox id, stable across republishing
	Kind        Kind      `json:"kind,omitempty"`
	GX          int       `json:"gx"`
	GY          int       `json:"gy"`
	Color       Color     `json:"-"`
	Version     int64     `json:"version"`
	CommittedAt time.Time `json:"committedAt"`
	// TraceParent and TraceState carry the W3C trace context of the request
	// that committed the event, so every hop can continue its trace.
	TraceParent string `json:"-"`
	TraceState  string `json:"-"`
	// Seq and Epoch are assigned by the relay when it publishes the event.
	Epoch string `json:"-"`
	Seq   uint64 `json:"seq,omitempty"`
}

// Position is a point in the event stream: every event of Epoch up to and
// including Seq. A zero Seq means "before the first event".
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// String renders the position as "epoch:seq", the form `?since=` takes.
func (p Position) String() string { return p.Epoch + ":" + strconv.FormatUint(p.Seq, 10) }

// ParsePosition parses "epoch:seq". Epochs are short tokens of letters, digits,
// '-' and '_'; anything else is rejected so a position can be echoed safely.
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return Position{}, Errorf(EInvalid, "position must look like <epoch>:<seq>, got %q", truncate(s, 64))
	}
	epoch := s[:i]
	if err := ValidateEpoch(epoch); err != nil {
		return Position{}, err
	}
	seq, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return Position{}, Errorf(EInvalid, "position sequence must be a non-negative integer, got %q", truncate(s[i+1:], 32))
	}
	return Position{Epoch: epoch, Seq: seq}, nil
}

// DefaultName is the canvas name when none is configured.
const DefaultName = "main"

// MaxNameLen is the longest name ValidateName accepts.
const MaxNameLen = 64

// IsNameRune reports whether r may appear in a name: an ASCII letter or
// digit, '.', '-' or '_'.
func IsNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
}

// ValidateName is the one rule for every name pixelflow puts into Redis
// keys, MongoDB ids, consumer groups and URLs: canvas names, instance ids
// and epochs. Such a name needs no quoting anywhere (no ':', '{', '/' or
// space).
func ValidateName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("must be 1..%d letters, digits, '.', '-' or '_'", MaxNameLen)
	}
	for _, r := range s {
		if !IsNameRune(r) {
			return fmt.Errorf("must be 1..%d letters, digits, '.', '-' or '_'", MaxNameLen)
		}
	}
	return nil
}

// ValidateEpoch checks an epoch token's shape (a name, see ValidateName).
func ValidateEpoch(epoch string) error {
	if err := ValidateName(epoch); err != nil {
		return Errorf(EInvalid, "epoch %s", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
