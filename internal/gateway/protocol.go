package gateway

import (
	"encoding/json"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The wire protocol is described for client authors in docs/protocol.md;
// this file is its server-side encoding. Frames are JSON text messages.

// Frame types, server → client and client → server.
const (
	typeHello  = "hello"
	typeEvents = "events"
	typeResync = "resync"
	typePing   = "ping"
	typePong   = "pong"
)

// Resync reasons. A client treats them all alike (reload the snapshot); the
// reason is there for logs and dashboards.
const (
	ReasonEpoch       = "epoch"       // the stream started a new epoch (Redis lost it, or first contact)
	ReasonSlow        = "slow"        // the client's queue overflowed; its backlog was dropped
	ReasonGap         = "gap"         // entries vanished (trimmed) before the gateway could read them
	ReasonTrimmed     = "trimmed"     // the resume position is older than the stream's retention
	ReasonLimit       = "limit"       // the resume gap is larger than ReplayLimit
	ReasonAhead       = "ahead"       // the resume position is past the stream's end
	ReasonUnavailable = "unavailable" // Redis could not be read to replay the gap
)

// maxClientFrame bounds what a client may send: a ping is a dozen bytes.
const maxClientFrame = 512

// helloFrame is the first frame of every connection: the position from which
// the connection is guaranteed every later event. Resumed tells a client that
// sent ?since= that its position was accepted: the gap is replayed next and it
// needs no snapshot.
type helloFrame struct {
	Type    string `json:"type"`
	Epoch   string `json:"epoch"`
	Seq     uint64 `json:"seq"`
	Resumed bool   `json:"resumed"`
}

// resyncFrame tells a client its view has a hole it cannot fill from the
// stream: reload the snapshot; every event after (Epoch, Seq) follows on this
// connection.
type resyncFrame struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Epoch  string `json:"epoch"`
	Seq    uint64 `json:"seq"`
}

// wireEvent is one event inside an events frame.
type wireEvent struct {
	Seq         uint64    `json:"seq"`
	ID          string    `json:"id,omitempty"`
	Kind        string    `json:"kind,omitempty"` // only "canary"; pixel events omit it
	GX          int       `json:"gx"`
	GY          int       `json:"gy"`
	Color       string    `json:"color"`
	Version     int64     `json:"version"`
	CommittedAt time.Time `json:"committedAt"`
	PublishedAt time.Time `json:"publishedAt,omitzero"`
}

// encodeEvent renders one stream entry for the wire. It runs once per entry,
// not once per client: the bytes are shared by every queue they land in.
func encodeEvent(e stream.Entry) []byte {
	w := wireEvent{
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
		w.Kind = string(canvas.KindCanary)
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
	return mustJSON(helloFrame{Type: typeHello, Epoch: pos.Epoch, Seq: pos.Seq, Resumed: resumed})
}

func encodeResync(reason string, pos canvas.Position) []byte {
	return mustJSON(resyncFrame{Type: typeResync, Reason: reason, Epoch: pos.Epoch, Seq: pos.Seq})
}

var pongFrame = []byte(`{"type":"pong"}`)

// Events frames are assembled from pre-encoded events without re-encoding.
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

// clientFrame is the only thing a client may say: {"type":"ping"}.
type clientFrame struct {
	Type string `json:"type"`
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
func parseClientFrame(messageType int, data []byte) (clientFrame, error) {
	var f clientFrame
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
		return clientFrame{}, &frameError{websocket.CloseInvalidFramePayloadData, "frame is not a JSON object"}
	}
	if f.Type != typePing {
		return clientFrame{}, &frameError{websocket.ClosePolicyViolation, "unsupported frame type"}
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
