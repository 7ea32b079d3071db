package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The wire protocol is described for client authors in docs/protocol.md;
// this file is its server-side encoding. A connection speaks JSON text
// messages unless it negotiated the binary subprotocol
// (protocol.SubprotocolBinary); JSON events carry the optional fields the
// client named in fields=.

// maxClientFrame bounds what a client may send: a ping is a dozen bytes,
// a subscribe of canvas.MaxRegions ids about 1.3 KB. maxBinaryClientFrame
// bounds pixelflow.v1.bin's, whose only message is a one-byte ping.
const (
	maxClientFrame       = 4096
	maxBinaryClientFrame = 512
)

// clientFrame is one frame a client sent: a ping, or a subscribe or
// unsubscribe (JSON only).
type clientFrame = protocol.Subscribe

// wireFormat is how one connection's events are encoded: JSON with a set of
// optional fields (a bit each), or binary. Every batch is encoded at most
// once per format in use, whoever needs it first (see batch), so a client
// that asks for the times costs the others nothing.
type wireFormat uint8

const (
	withID          wireFormat = 1 << iota // JSON with "id"
	withCommittedAt                        // JSON with "committedAt"
	withPublishedAt                        // JSON with "publishedAt"
	binaryFormat                           // pixelflow.v1.bin, which carries no optional field

	// numFormats bounds every format: JSON with each set of fields (0–7),
	// and binary (8).
	numFormats = binaryFormat + 1
)

func (f wireFormat) binary() bool { return f == binaryFormat }

// wireEvent is what the wire needs of a stream entry, copied once per
// broadcast: batches keep it until every format in use has encoded it.
type wireEvent struct {
	seq       uint64
	id        string
	canary    bool
	gx, gy    int
	rgb       uint32
	version   int64
	committed time.Time
	published time.Time // zero: not known (entries written before publishedAt existed)
}

func toWire(e stream.Entry) wireEvent {
	w := wireEvent{seq: e.Seq, id: e.ID, canary: e.Kind == canvas.KindCanary, gx: e.GX, gy: e.GY,
		rgb: uint32(e.Color) & 0xFFFFFF, version: e.Version, committed: e.CommittedAt, published: e.PublishedAt}
	if w.published.UnixNano() == 0 {
		w.published = time.Time{}
	}
	return w
}

func toWireAll(entries []stream.Entry) []wireEvent {
	evs := make([]wireEvent, len(entries))
	for i, e := range entries {
		evs[i] = toWire(e)
	}
	return evs
}

// appendEvent appends one event in format f. JSON members come in
// protocol.Event's order; a canary carries only seq and kind (and the
// fields asked for), since clients apply nothing from it.
func appendEvent(buf []byte, f wireFormat, e *wireEvent) []byte {
	if f.binary() {
		if e.canary {
			return protocol.AppendBinaryCanary(buf)
		}
		return protocol.AppendBinaryPixel(buf, e.gx, e.gy, e.rgb, e.version)
	}
	buf = strconv.AppendUint(append(buf, `{"seq":`...), e.seq, 10)
	if f&withID != 0 && e.id != "" {
		buf = appendJSONString(append(buf, `,"id":`...), e.id)
	}
	if e.canary {
		buf = append(buf, `,"kind":"`+protocol.KindCanary+`"`...)
	} else {
		buf = strconv.AppendInt(append(buf, `,"gx":`...), int64(e.gx), 10)
		buf = strconv.AppendInt(append(buf, `,"gy":`...), int64(e.gy), 10)
		buf = appendHexColor(append(buf, `,"color":"#`...), e.rgb)
		buf = strconv.AppendInt(append(buf, `","version":`...), e.version, 10)
	}
	if f&withCommittedAt != 0 && !e.committed.IsZero() {
		buf = append(e.committed.UTC().AppendFormat(append(buf, `,"committedAt":"`...), time.RFC3339Nano), '"')
	}
	if f&withPublishedAt != 0 && !e.published.IsZero() {
		buf = append(e.published.UTC().AppendFormat(append(buf, `,"publishedAt":"`...), time.RFC3339Nano), '"')
	}
	return append(buf, '}')
}

// appendHexColor appends RRGGBB in upper case, as canvas.Color.String
// writes it, without its fmt call (once per event and format).
func appendHexColor(buf []byte, rgb uint32) []byte {
	const digits = "0123456789ABCDEF"
	for shift := 20; shift >= 0; shift -= 4 {
		buf = append(buf, digits[(rgb>>uint(shift))&0xF])
	}
	return buf
}

// appendJSONString appends s as a JSON string. Outbox ids are hex, so the
// plain path is the one taken; anything else goes through encoding/json.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7F || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(buf, b...)
		}
	}
	return append(append(append(buf, '"'), s...), '"')
}

// encodeEvents encodes evs in format f into one buffer, returning each
// event's bytes.
func encodeEvents(f wireFormat, evs []wireEvent) [][]byte {
	out := make([][]byte, len(evs))
	buf := make([]byte, 0, len(evs)*encodedSize(f))
	for i := range evs {
		start := len(buf)
		buf = appendEvent(buf, f, &evs[i])
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// encodedSize is a typical event's size in format f, to size buffers.
func encodedSize(f wireFormat) int {
	switch {
	case f.binary():
		return 12
	case f == 0:
		return 64
	}
	return 160
}

func encodeHello(f wireFormat, pos canvas.Position, resumed bool) []byte {
	if f.binary() {
		return protocol.AppendBinaryHello(nil, pos.Epoch, pos.Seq, resumed)
	}
	return mustJSON(protocol.Hello{Type: protocol.TypeHello, Epoch: pos.Epoch, Seq: pos.Seq, Resumed: resumed})
}

func encodeResync(f wireFormat, reason string, pos canvas.Position) []byte {
	if f.binary() {
		return protocol.AppendBinaryResync(nil, reason, pos.Epoch, pos.Seq)
	}
	return mustJSON(protocol.Resync{Type: protocol.TypeResync, Reason: reason, Epoch: pos.Epoch, Seq: pos.Seq})
}

// resyncFrames is one resync as a whole frame in each encoding, each built
// on first need: a broadcast that degrades clients, or a resync of all of
// them, builds it once for all.
type resyncFrames struct {
	reason string
	pos    canvas.Position
	wire   [2][]byte // JSON, binary
}

func (r *resyncFrames) frame(f wireFormat) []byte {
	i := 0
	if f.binary() {
		i = 1
	}
	if r.wire[i] == nil {
		r.wire[i] = messageFrame(f, encodeResync(f, r.reason, r.pos))
	}
	return r.wire[i]
}

var pongFrame = []byte(`{"type":"pong"}`)

// Events frames (protocol.Events) are assembled from pre-encoded events
// without re-encoding.
var (
	eventsPrefix = []byte(`{"type":"events","events":[`)
	eventsSuffix = []byte(`]}`)
)

func appendEventsFrame(buf []byte, evs [][]byte) []byte {
	buf = append(buf, eventsPrefix...)
	for i, e := range evs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	return append(buf, eventsSuffix...)
}

// appendEventsPayload appends the events message of evs, encoded in f, the
// first of which has sequence first (the binary header carries it; the
// others follow one by one).
func appendEventsPayload(buf []byte, f wireFormat, first uint64, evs [][]byte) []byte {
	if !f.binary() {
		return appendEventsFrame(buf, evs)
	}
	buf = protocol.AppendBinaryEventsHeader(buf, first)
	for _, e := range evs {
		buf = append(buf, e...)
	}
	return buf
}

// eventsPayloadLen is the length appendEventsPayload appends.
func eventsPayloadLen(f wireFormat, first uint64, evs [][]byte) int {
	n := 0
	for _, e := range evs {
		n += len(e)
	}
	if f.binary() {
		return n + len(protocol.AppendBinaryEventsHeader(make([]byte, 0, 11), first))
	}
	return n + len(eventsPrefix) + len(eventsSuffix) + max(len(evs)-1, 0)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}

// parseFields reads the optional fields= parameter: a comma-separated list
// of protocol.FieldID, FieldCommittedAt and FieldPublishedAt, each at most
// once (empty: none).
func parseFields(q url.Values) (wireFormat, error) {
	vals, present := q["fields"]
	if !present {
		return 0, nil
	}
	if len(vals) != 1 {
		return 0, canvas.Errorf(canvas.EInvalid, "give fields at most once")
	}
	var f wireFormat
	if vals[0] == "" {
		return 0, nil
	}
	for _, name := range strings.Split(vals[0], ",") {
		var bit wireFormat
		switch name {
		case protocol.FieldID:
			bit = withID
		case protocol.FieldCommittedAt:
			bit = withCommittedAt
		case protocol.FieldPublishedAt:
			bit = withPublishedAt
		default:
			return 0, canvas.Errorf(canvas.EInvalid, "fields: unknown field %q; want a comma-separated list of %s, %s, %s",
				truncate(name, 32), protocol.FieldID, protocol.FieldCommittedAt, protocol.FieldPublishedAt)
		}
		if f&bit != 0 {
			return 0, canvas.Errorf(canvas.EInvalid, "fields: %s named twice", name)
		}
		f |= bit
	}
	return f, nil
}

// negotiate picks the connection's subprotocol from the client's
// Sec-WebSocket-Protocol offers: the binary one when offered, none (JSON)
// when nothing is offered. Offers that name only protocols this gateway
// does not speak are refused before the upgrade: a client that asked for
// a protocol must not be handed another one silently.
func negotiate(r *http.Request) (subprotocol string, err error) {
	offers := websocket.Subprotocols(r)
	if len(offers) == 0 {
		return "", nil
	}
	for _, p := range offers {
		if p == protocol.SubprotocolBinary {
			return p, nil
		}
	}
	return "", canvas.Errorf(canvas.EInvalid, "unsupported WebSocket subprotocol %q: this gateway speaks %s, or JSON when none is asked for",
		truncate(strings.Join(offers, ", "), 64), protocol.SubprotocolBinary)
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// frameError is a client frame the gateway refuses; Code is the WebSocket
// close code the connection is closed with.
type frameError struct {
	Code   int
	Reason string
}

func (e *frameError) Error() string { return "close " + strconv.Itoa(e.Code) + ": " + e.Reason }

// parseClientFrame validates one message from a client speaking format f:
// a ping, or (JSON) a subscribe or unsubscribe. Anything else is a
// protocol violation that closes the connection with the code RFC 6455
// §7.4.1 gives it: a frame of the other encoding's type is unsupported
// data (1003), a malformed one invalid payload (1007), a well-formed
// message of another type a policy violation (1008). Whether the regions
// named exist is the hub's to check (view.apply).
func parseClientFrame(f wireFormat, messageType int, data []byte) (clientFrame, error) {
	var p clientFrame
	switch {
	case messageType != websocket.TextMessage && messageType != websocket.BinaryMessage:
		return p, &frameError{websocket.CloseProtocolError, "unexpected frame type"}
	case len(data) > maxClientFrame || f.binary() && len(data) > maxBinaryClientFrame:
		return p, &frameError{websocket.CloseMessageTooBig, "frame too large"}
	case f.binary():
		return parseBinaryClientFrame(messageType, data)
	case messageType == websocket.BinaryMessage:
		return p, &frameError{websocket.CloseUnsupportedData, "binary frames need the " + protocol.SubprotocolBinary + " subprotocol"}
	case !utf8.Valid(data):
		return p, &frameError{websocket.CloseInvalidFramePayloadData, "text frame is not valid UTF-8"}
	}
	var probe struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, "frame is not a JSON object"}
	}
	switch probe.Type {
	case protocol.TypePing:
		return clientFrame{Type: protocol.TypePing}, nil
	case protocol.TypeSubscribe, protocol.TypeUnsubscribe:
	default:
		return clientFrame{}, &frameError{websocket.ClosePolicyViolation, "unsupported frame type"}
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, probe.Type + ": regions must be a list of region ids, all a boolean"}
	}
	switch {
	case p.All && (p.Type == protocol.TypeUnsubscribe || len(p.Regions) > 0):
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, p.Type + ": all is only for subscribe, without regions"}
	case !p.All && len(p.Regions) == 0:
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, p.Type + ": name at least one region"}
	}
	return p, nil
}

// parseBinaryClientFrame is parseClientFrame for pixelflow.v1.bin, where
// the only client message is the one byte protocol.BinPing.
func parseBinaryClientFrame(messageType int, data []byte) (clientFrame, error) {
	switch {
	case messageType == websocket.TextMessage:
		return clientFrame{}, &frameError{websocket.CloseUnsupportedData, "text frames are not part of " + protocol.SubprotocolBinary}
	case len(data) == 0:
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, "empty message"}
	case data[0] != protocol.BinPing:
		return clientFrame{}, &frameError{websocket.ClosePolicyViolation, "unsupported message type " + strconv.Itoa(int(data[0]))}
	case len(data) != 1:
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, "a ping is one byte"}
	}
	return clientFrame{Type: protocol.TypePing}, nil
}

// parseRegions reads the optional ?regions= list of a canvas of size s:
// absent is the whole canvas.
func parseRegions(q url.Values, s canvas.Size) (view, error) {
	vals, present := q["regions"]
	if !present {
		return view{}, nil
	}
	if len(vals) != 1 {
		return view{}, canvas.Errorf(canvas.EInvalid, "give regions at most once")
	}
	ids, err := canvas.ParseRegions(s, vals[0])
	if err != nil {
		return view{}, err
	}
	return view{regional: true, regions: ids}, nil
}

// parseSince reads the optional ?since=<epoch>:<seq> resume position.
func parseSince(q url.Values) (pos canvas.Position, ok bool, err error) {
	vals, present := q["since"]
	if !present {
		return canvas.Position{}, false, nil
	}
	if len(vals) != 1 {
		return canvas.Position{}, false, canvas.Errorf(canvas.EInvalid, "give since at most once")
	}
	pos, err = canvas.ParsePosition(vals[0])
	if err != nil {
		return canvas.Position{}, false, err
	}
	return pos, true, nil
}
