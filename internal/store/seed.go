package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Seed paints every pixel of a width×height canvas with color(gx, gy) at
// version 1, writing the tile documents directly: no outbox events, so no
// client hears of it. It is for benchmarks and demos that need a full
// canvas (a million pixels) in seconds rather than a million placements,
// and refuses a canvas that already has pixels.
func (s *Store) Seed(ctx context.Context, width, height int, color func(gx, gy int) canvas.Color) error {
	coll := s.db.Collection(cPixels)
	n, err := coll.CountDocuments(ctx, map[string]any{"canvas": s.opts.Canvas})
	if err != nil {
		return unavailable("seed: count tiles", err)
	}
	if n > 0 {
		return canvas.Errorf(canvas.EConflict, "seed: the canvas already has %d tiles", n)
	}
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	for ty := 0; ty*tileSize < height; ty++ {
		row := make([]any, 0, (width+tileSize-1)/tileSize)
		for tx := 0; tx*tileSize < width; tx++ {
			t := tileDoc{ID: fmt.Sprintf("%s/%d/%d", s.opts.Canvas, tx, ty), Canvas: s.opts.Canvas, TX: tx, TY: ty, P: map[string]tilePixel{}}
			for i := range tileSize * tileSize {
				gx, gy := tx*tileSize+i%tileSize, ty*tileSize+i/tileSize
				if gx < width && gy < height {
					t.P[strconv.Itoa(i)] = tilePixel{Color: color(gx, gy).String(), Version: 1, UpdatedAt: now}
				}
			}
			row = append(row, t)
		}
		if _, err := coll.InsertMany(ctx, row); err != nil {
			return unavailable("seed: insert tiles", err)
		}
	}
	return nil
}
