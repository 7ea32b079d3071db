package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

// A snapshot of a 1000×1000 canvas is a million pixels read from the store
// and up to 48 MiB of JSON, and every resync makes every client fetch one.
// snapshots shares the work between requests, under one rule that keeps
// the protocol's promise ("the snapshot is at least as new as the position
// the client holds"): a request may only be answered by a build that read
// the pixels after the client learned its position. Two ways satisfy it:
//
//   - Coalescing. A build that has not started yet reads the pixels after
//     every request waiting for it arrived, so any request may join it.
//     While builds run, the requests arriving meanwhile all wait for one
//     next build instead of each starting its own.
//   - The key. Options.SnapshotKey names the newest position any client can
//     hold right now (see TailKey). A build reads the key first, then
//     the pixels, so it holds every event up to its key. A request that
//     reads the same key afterwards holds a position at most that key:
//     the build (finished, or running) answers it, and so does the copy the
//     client already has, whose ETag is that key (304).
//
// At most Options.SnapshotBuilds builds run at once, so memory stays bounded
// however many requests arrive. Each form (binary, gzip, JSON) is encoded
// once per build, on first use.
type snapshots struct {
	store Store
	size  canvas.Size
	key   func(ctx context.Context) (string, error) // nil: no key
	sem   chan struct{}

	mu      sync.Mutex
	last    *snapshot // newest keyed build that finished
	queued  *flight   // the next build: not started, joinable by anyone
	running []*flight // started builds
}

// buildTimeout bounds one build, which runs detached from the requests
// waiting for it.
const buildTimeout = 30 * time.Second

type flight struct {
	key   string
	keyed bool // key was read
	done  chan struct{}
	snap  *snapshot
	err   error
}

func newSnapshots(s Store, size canvas.Size, key func(context.Context) (string, error), builds int) *snapshots {
	return &snapshots{store: s, size: size, key: key, sem: make(chan struct{}, max(1, builds))}
}

// get returns a snapshot valid for a request that arrived before the call.
// key is the current SnapshotKey when keyed is true (read by the caller).
func (c *snapshots) get(ctx context.Context, key string, keyed bool) (*snapshot, error) {
	c.mu.Lock()
	var f *flight
	switch {
	case keyed && c.last != nil && c.last.key == key:
		s := c.last
		c.mu.Unlock()
		return s, nil
	case keyed && c.runningWith(key) != nil:
		f = c.runningWith(key)
	case c.queued != nil:
		f = c.queued
	default:
		f = &flight{done: make(chan struct{})}
		c.queued = f
		// Detached from this request: the build answers every request
		// that joins it, whichever of them goes away.
		go c.run(context.WithoutCancel(ctx), f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.snap, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *snapshots) runningWith(key string) *flight {
	for _, f := range c.running {
		if f.keyed && f.key == key {
			return f
		}
	}
	return nil
}

// currentKey reads the key; ok is false without one (no SnapshotKey, or it
// failed: then nothing is shared across requests but coalescing).
func (c *snapshots) currentKey(ctx context.Context) (string, bool) {
	if c.key == nil {
		return "", false
	}
	k, err := c.key(ctx)
	return k, err == nil
}

// run builds f once a build slot is free.
func (c *snapshots) run(ctx context.Context, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	var snap *snapshot
	var err error
	defer func() {
		c.mu.Lock()
		c.running = slices.DeleteFunc(c.running, func(o *flight) bool { return o == f })
		if err == nil && f.keyed {
			c.last = snap
		}
		f.snap, f.err = snap, err
		c.mu.Unlock()
		close(f.done)
	}()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		err = canvas.Errorf(canvas.EUnavailable, "the canvas snapshot is busy, try again shortly")
		c.mu.Lock()
		if c.queued == f {
			c.queued = nil
		}
		c.mu.Unlock()
		return
	}
	defer func() { <-c.sem }()
	c.mu.Lock()
	c.queued = nil // requests from now on need a build that starts after them
	c.running = append(c.running, f)
	c.mu.Unlock()
	// The key first, then the pixels: the build holds every event up to
	// the key.
	key, keyed := c.currentKey(ctx)
	c.mu.Lock()
	f.key, f.keyed = key, keyed
	c.mu.Unlock()
	pos, pixels, err := c.store.Snapshot(ctx)
	if err != nil {
		return
	}
	snap = &snapshot{key: key, keyed: keyed, size: c.size, pos: pos, pixels: pixels}
}

// snapshot is one build: the pixels and their encodings, each made once.
type snapshot struct {
	key   string
	keyed bool
	size  canvas.Size
	pos   canvas.Position

	pixels []store.Pixel

	rawOnce sync.Once
	raw     []byte // RGB, row-major
	gzOnce  sync.Once
	gz      []byte // gzip of raw
	jsOnce  sync.Once
	jsGz    []byte // gzip of the JSON form
	rgOnce  sync.Once
	regions map[canvas.Region][]int32 // region → indexes into pixels, for region snapshots
}

// etag is the entity tag of one form of the snapshot, or "" when the
// build has no key.
func (s *snapshot) etag(form string) string {
	if !s.keyed {
		return ""
	}
	return etagFor(s.key, form)
}

func etagFor(key, form string) string { return strconv.Quote(key + "." + form) }

// binary is the canvas as RGB bytes, row-major; unpainted pixels are
// Background.
func (s *snapshot) binary() []byte {
	s.rawOnce.Do(func() {
		sz := s.size
		buf := make([]byte, sz.Width*sz.Height*3)
		br, bg, bb := Background.RGB()
		for i := 0; i < len(buf); i += 3 {
			buf[i], buf[i+1], buf[i+2] = br, bg, bb
		}
		for _, p := range s.pixels {
			if !sz.Contains(p.GX, p.GY) {
				continue
			}
			i := (p.GY*sz.Width + p.GX) * 3
			buf[i], buf[i+1], buf[i+2] = p.Color.RGB()
		}
		s.raw = buf
	})
	return s.raw
}

// binaryGzip is binary, gzip-compressed (a mostly blank 1000×1000 canvas
// is a few KiB).
func (s *snapshot) binaryGzip() []byte {
	s.gzOnce.Do(func() { s.gz = gzipBytes(s.binary()) })
	return s.gz
}

// jsonGzip is the JSON form (CanvasJSON), gzip-compressed. It is written
// by hand: encoding/json spends most of a second on a million pixels.
func (s *snapshot) jsonGzip() []byte {
	s.jsOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		pos, _ := json.Marshal(s.pos)
		b := make([]byte, 0, 64<<10)
		b = s.appendHead(b, pos)
		first := true
		for _, p := range s.pixels {
			if !s.size.Contains(p.GX, p.GY) {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendPixel(b, p)
			if len(b) > 60<<10 {
				_, _ = zw.Write(b)
				b = b[:0]
			}
		}
		b = append(b, "]}\n"...)
		_, _ = zw.Write(b)
		_ = zw.Close()
		s.jsGz = buf.Bytes()
	})
	return s.jsGz
}

// appendHead appends the JSON form's members before the pixels' elements.
func (s *snapshot) appendHead(b, pos []byte) []byte {
	b = append(b, `{"width":`...)
	b = strconv.AppendInt(b, int64(s.size.Width), 10)
	b = append(b, `,"height":`...)
	b = strconv.AppendInt(b, int64(s.size.Height), 10)
	b = append(b, `,"position":`...)
	b = append(b, pos...)
	return append(b, `,"pixels":[`...)
}

// appendPixel appends one element of the JSON form's pixels.
func appendPixel(b []byte, p store.Pixel) []byte {
	b = append(b, `{"gx":`...)
	b = strconv.AppendInt(b, int64(p.GX), 10)
	b = append(b, `,"gy":`...)
	b = strconv.AppendInt(b, int64(p.GY), 10)
	b = append(b, `,"color":"#`...)
	b = appendHex6(b, uint32(p.Color))
	b = append(b, `","version":`...)
	b = strconv.AppendInt(b, p.Version, 10)
	return append(b, '}')
}

// regionsJSON is the JSON form restricted to regions (sorted, valid for
// the canvas): the build's position and its pixels inside them, region by
// region. It is made per request from an index of the build's pixels by
// region, built once, so a request costs its regions' pixels only.
func (s *snapshot) regionsJSON(regions []canvas.Region) []byte {
	s.rgOnce.Do(func() {
		s.regions = make(map[canvas.Region][]int32)
		for i, p := range s.pixels {
			if s.size.Contains(p.GX, p.GY) {
				r := canvas.RegionOf(p.GX, p.GY)
				s.regions[r] = append(s.regions[r], int32(i))
			}
		}
	})
	pos, _ := json.Marshal(s.pos)
	n := 0
	for _, r := range regions {
		n += len(s.regions[r])
	}
	b := s.appendHead(make([]byte, 0, 128+n*64), pos)
	first := true
	for _, r := range regions {
		for _, i := range s.regions[r] {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendPixel(b, s.pixels[i])
		}
	}
	return append(b, "]}\n"...)
}

func appendHex6(b []byte, c uint32) []byte {
	const digits = "0123456789ABCDEF"
	for shift := 20; shift >= 0; shift -= 4 {
		b = append(b, digits[(c>>uint(shift))&0xF])
	}
	return b
}

func gzipBytes(p []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(p)
	_ = zw.Close()
	return buf.Bytes()
}

// TailKey is a SnapshotKey for a stream-fed canvas: it names the newest
// position a client can hold by tail, which must bound every position a
// gateway hands out (the stream's tail, or Gateway.HandedOut where a
// gateway takes offers ahead of the stream), and the last number the
// store's sequencer handed out (its open claim's last, else its published
// position), which never goes back within an epoch, so a tail that went
// back (Redis lost its newest entries) is not taken for an older one, and
// a position a gateway in another process was offered before the XADD is
// covered by any api reading the store. While the tail cannot
// be read, requests do not each wait for that to time out: after a
// failure, the key is unread (snapshots are then only shared between
// concurrent requests) for a second.
func TailKey(tail, published func(ctx context.Context) (canvas.Position, error)) func(ctx context.Context) (string, error) {
	var failedAt atomic.Int64
	errRecent := errors.New("stream tail unread: it failed within the last second")
	return func(ctx context.Context) (string, error) {
		if t := failedAt.Load(); t != 0 && time.Since(time.Unix(0, t)) < time.Second {
			return "", errRecent
		}
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		t, err := tail(ctx)
		if err != nil {
			failedAt.Store(time.Now().UnixNano())
			return "", err
		}
		p, err := published(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s:%d:%d", t.Epoch, t.Seq, p.Seq), nil
	}
}
