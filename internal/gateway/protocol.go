package gateway

import (
	"encoding/json"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The wire protocol is described for client authors in docs/protocol.md;
// this file is its server-side encoding. Frames are JSON text messages.

// maxClientFrame bounds what a client may send: a ping is a dozen bytes.
const maxClientFrame = 512

// encodeEvent renders one stream entry for the wire. It runs once per entry,
// not once per client: the bytes are shared by every queue they land in.
func encodeEvent(e stream.Entry) []byte {
	w := protocol.Event{
		Seq:         e.Seq,
		ID:          e.ID,
		GX:          e.GX,
		GY:          e.GY,
		Color:       e.Color.String(),
		Version:     e.Version,
		CommittedAt: e.CommittedAt.UTC(),
		PublishedAt: e.PublishedAt.UTC(),
	}
	if e.Kind == canvas.KindCanary {
		w.Kind = protocol.KindCanary
	}
	if e.PublishedAt.IsZero() || e.PublishedAt.UnixNano() == 0 {
		w.PublishedAt = time.Time{}
	}
	b, err := json.Marshal(w)
	if err != nil { // cannot happen: every field is a plain value
		panic("gateway: encode event: " + err.Error())
	}
	return b
}

func encodeHello(pos canvas.Position, resumed bool) []byte {
	return mustJSON(protocol.Hello{Type: protocol.TypeHello, Epoch: pos.Epoch, Seq: pos.Seq, Resumed: resumed})
}

func encodeResync(reason string, pos canvas.Position) []byte {
	return mustJSON(protocol.Resync{Type: protocol.TypeResync, Reason: reason, Epoch: pos.Epoch, Seq: pos.Seq})
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}

// frameError is a client frame the gateway refuses; Code is the WebSocket
// close code the connection is closed with.
type frameError struct {
	Code   int
	Reason string
}

func (e *frameError) Error() string { return "close " + strconv.Itoa(e.Code) + ": " + e.Reason }

// parseClientFrame validates one message from a client. Clients have nothing
// to tell the gateway but ping, so anything else is a protocol violation that
// closes the connection with the code RFC 6455 §7.4.1 gives it.
func parseClientFrame(messageType int, data []byte) (protocol.Ping, error) {
	var f protocol.Ping
	switch {
	case messageType == websocket.BinaryMessage:
		return f, &frameError{websocket.CloseUnsupportedData, "binary frames are not supported"}
	case messageType != websocket.TextMessage:
		return f, &frameError{websocket.CloseProtocolError, "unexpected frame type"}
	case len(data) > maxClientFrame:
		return f, &frameError{websocket.CloseMessageTooBig, "frame too large"}
	case !utf8.Valid(data):
		return f, &frameError{websocket.CloseInvalidFramePayloadData, "text frame is not valid UTF-8"}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return protocol.Ping{}, &frameError{websocket.CloseInvalidFramePayloadData, "frame is not a JSON object"}
	}
	if f.Type != protocol.TypePing {
		return protocol.Ping{}, &frameError{websocket.ClosePolicyViolation, "unsupported frame type"}
	}
	return f, nil
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
