package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// SubprotocolBinary is the Sec-WebSocket-Protocol of the binary encoding
// (docs/protocol.md, "The binary subprotocol"). A client that asks for none
// speaks JSON.
//
// Why a second encoding: a JSON pixel event costs its field names on every
// delivery (about 60 bytes); the binary one names nothing, takes the
// sequence from the frame's header and the colour as three bytes, and
// costs about 8. Every message type has a binary form, so a client decodes
// one format only.
const SubprotocolBinary = "pixelflow.v1.bin"

// Binary message types: the first byte of every binary message, one
// namespace for both directions so a message sent the wrong way is an
// unknown type rather than a misread one.
const (
	BinHello  byte = 0x01 // server → client
	BinEvents byte = 0x02 // server → client
	BinResync byte = 0x03 // server → client
	BinPong   byte = 0x04 // server → client
	BinPing   byte = 0x05 // client → server, the only message a client may send
)

// binCanary is an event's head for a canary; a pixel's head is gx<<1.
const binCanary = 1

// maxBinString bounds the epoch and reason strings (one length byte; an
// epoch is at most 64 characters).
const maxBinString = 255

// AppendBinaryEventsHeader starts a binary events message whose first event
// has sequence first; the events follow, appended with AppendBinaryPixel or
// AppendBinaryCanary, each one sequence after the one before.
func AppendBinaryEventsHeader(buf []byte, first uint64) []byte {
	return binary.AppendUvarint(append(buf, BinEvents), first)
}

// AppendBinaryPixel appends one pixel event: uvarint gx<<1, uvarint gy, the
// colour's three bytes R, G, B, uvarint version. Coordinates and versions
// are never negative on the wire: a negative one is encoded as 0.
func AppendBinaryPixel(buf []byte, gx, gy int, rgb uint32, version int64) []byte {
	buf = binary.AppendUvarint(buf, uint64(max(gx, 0))<<1)
	buf = binary.AppendUvarint(buf, uint64(max(gy, 0)))
	buf = append(buf, byte(rgb>>16), byte(rgb>>8), byte(rgb))
	return binary.AppendUvarint(buf, uint64(max(version, 0)))
}

// AppendBinaryCanary appends one canary event: the single byte 0x01.
func AppendBinaryCanary(buf []byte) []byte { return append(buf, binCanary) }

// AppendBinaryHello appends a hello message: type, flags (bit 0: resumed),
// uvarint seq, the epoch as a length byte and its bytes.
func AppendBinaryHello(buf []byte, epoch string, seq uint64, resumed bool) []byte {
	var flags byte
	if resumed {
		flags = 1
	}
	buf = binary.AppendUvarint(append(buf, BinHello, flags), seq)
	return appendBinString(buf, epoch)
}

// AppendBinaryResync appends a resync message: type, uvarint seq, the epoch,
// then the reason, each as a length byte and its bytes.
func AppendBinaryResync(buf []byte, reason, epoch string, seq uint64) []byte {
	buf = binary.AppendUvarint(append(buf, BinResync), seq)
	return appendBinString(appendBinString(buf, epoch), reason)
}

// appendBinString appends s with its length byte; longer strings are cut
// (epochs and reasons are short by construction).
func appendBinString(buf []byte, s string) []byte {
	if len(s) > maxBinString {
		s = s[:maxBinString]
	}
	return append(append(buf, byte(len(s))), s...)
}

// EncodeBinary encodes any server frame in the binary subprotocol (the
// gateway builds its messages piecewise instead; this is for tests, test
// vectors and scripted servers). Events must be contiguous in sequence.
func EncodeBinary(f ServerFrame) ([]byte, error) {
	switch f.Type {
	case TypeHello:
		return AppendBinaryHello(nil, f.Epoch, f.Seq, f.Resumed), nil
	case TypeResync:
		return AppendBinaryResync(nil, f.Reason, f.Epoch, f.Seq), nil
	case TypePong:
		return []byte{BinPong}, nil
	case TypeEvents:
		if len(f.Events) == 0 || f.Events[0].Seq == 0 {
			return nil, errors.New("binary events: need at least one event, the first with seq ≥ 1")
		}
		b := AppendBinaryEventsHeader(nil, f.Events[0].Seq)
		for i, e := range f.Events {
			if e.Seq != f.Events[0].Seq+uint64(i) {
				return nil, fmt.Errorf("binary events: event %d has seq %d, want %d", i, e.Seq, f.Events[0].Seq+uint64(i))
			}
			if e.Kind == KindCanary {
				b = AppendBinaryCanary(b)
				continue
			}
			rgb, err := parseHexColor(e.Color)
			if err != nil {
				return nil, fmt.Errorf("binary events: event %d: %w", i, err)
			}
			b = AppendBinaryPixel(b, e.GX, e.GY, rgb, e.Version)
		}
		return b, nil
	}
	return nil, fmt.Errorf("binary: no encoding for frame type %q", f.Type)
}

// DecodeBinary decodes one binary server message into the frame its JSON
// twin decodes to (events: Seq, Kind, GX, GY, Color as "#RRGGBB", Version;
// no ids or times, which the binary encoding does not carry). It refuses
// anything but the canonical encoding (minimal varints, no trailing bytes,
// flags and heads the spec reserves left unset), so every frame has
// exactly one encoding.
func DecodeBinary(b []byte) (ServerFrame, error) {
	if len(b) == 0 {
		return ServerFrame{}, errors.New("binary: empty message")
	}
	r := binReader{b: b[1:]}
	var f ServerFrame
	switch b[0] {
	case BinHello:
		flags := r.byte()
		if r.err == nil && flags&^1 != 0 {
			r.fail("hello flags %#x: only bit 0 is defined", flags)
		}
		f = ServerFrame{Type: TypeHello, Resumed: flags&1 != 0, Seq: r.uvarint(), Epoch: r.string()}
	case BinResync:
		f = ServerFrame{Type: TypeResync, Seq: r.uvarint(), Epoch: r.string()}
		f.Reason = r.string()
	case BinPong:
		f = ServerFrame{Type: TypePong}
	case BinEvents:
		f = ServerFrame{Type: TypeEvents}
		seq := r.uvarint()
		if r.err == nil && seq == 0 {
			r.fail("events: first seq 0")
		}
		for r.err == nil && len(r.b) > 0 {
			if len(f.Events) > 0 && seq == math.MaxUint64 {
				r.fail("events: sequence overflows")
				break
			}
			if len(f.Events) > 0 {
				seq++
			}
			e := r.event()
			e.Seq = seq
			f.Events = append(f.Events, e)
		}
		if r.err == nil && len(f.Events) == 0 {
			r.fail("events: no event")
		}
	default:
		return ServerFrame{}, fmt.Errorf("binary: unknown message type %#x", b[0])
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return ServerFrame{}, fmt.Errorf("binary %s: %w", f.Type, r.err)
	}
	return f, nil
}

// binReader reads a binary message; the first error sticks and every later
// read returns zero.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *binReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// uvarint reads a minimal unsigned LEB128 varint.
func (r *binReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n == 0:
		r.fail("truncated varint")
		return 0
	case n < 0:
		r.fail("varint overflows 64 bits")
		return 0
	case n != uvarintLen(v):
		r.fail("varint not minimally encoded")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) string() string {
	n := int(r.byte())
	if r.err != nil {
		return ""
	}
	if len(r.b) < n {
		r.fail("truncated string")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// event reads one event body (the sequence comes from the header).
func (r *binReader) event() Event {
	head := r.uvarint()
	if r.err != nil {
		return Event{}
	}
	if head&1 == 1 {
		if head != binCanary {
			r.fail("event head %d: odd heads other than 1 are reserved", head)
			return Event{}
		}
		return Event{Kind: KindCanary}
	}
	gx, gy := head>>1, r.uvarint()
	if r.err == nil && len(r.b) < 3 {
		r.fail("truncated colour")
	}
	if r.err != nil {
		return Event{}
	}
	rgb := uint32(r.b[0])<<16 | uint32(r.b[1])<<8 | uint32(r.b[2])
	r.b = r.b[3:]
	version := r.uvarint()
	switch {
	case r.err != nil:
		return Event{}
	case gx > math.MaxInt32 || gy > math.MaxInt32:
		r.fail("coordinate (%d,%d) out of range", gx, gy)
		return Event{}
	case version > math.MaxInt64:
		r.fail("version %d out of range", version)
		return Event{}
	}
	return Event{GX: int(gx), GY: int(gy), Color: HexColor(rgb), Version: int64(version)}
}

// uvarintLen is the length of v's minimal uvarint encoding.
func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

// HexColor renders a 24-bit colour as "#RRGGBB" (upper case, as the
// gateway and the API write it).
func HexColor(rgb uint32) string {
	const digits = "0123456789ABCDEF"
	b := [7]byte{'#'}
	for i := 0; i < 6; i++ {
		b[6-i] = digits[(rgb>>(4*i))&0xF]
	}
	return string(b[:])
}

// parseHexColor reads "#RRGGBB" (either case).
func parseHexColor(s string) (uint32, error) {
	if len(s) != 7 || s[0] != '#' {
		return 0, fmt.Errorf("colour %q: want #RRGGBB", s)
	}
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("colour %q: want #RRGGBB", s)
	}
	return uint32(v), nil
}
