// Package protocol declares the messages of the pixelflow WebSocket protocol
// (docs/protocol.md) once, so the gateway that writes them, the Go client
// that reads them and the API that answers a placement with the same event
// shape cannot drift apart. For JSON it holds types and names only: each side
// encodes its own way (the gateway assembles events frames from events it
// encoded once, for every client). The binary subprotocol (binary.go) has no
// library to lean on, so its encoder and decoder live here, next to the
// test vectors docs/protocol.md quotes: one codec for the gateway, the Go
// client and the fuzz targets, checked against the same bytes as the
// browser's decoder.
package protocol

import (
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Frame types, the "type" of every frame.
const (
	TypeHello  = "hello"  // server → client, always first
	TypeEvents = "events" // server → client
	TypeResync = "resync" // server → client
	TypePong   = "pong"   // server → client, the answer to a ping
	TypePing   = "ping"   // client → server

	// Regions (docs/protocol.md, "Regions"): JSON only.
	TypeSubscribe   = "subscribe"   // client → server: add regions, or all
	TypeUnsubscribe = "unsubscribe" // client → server: remove regions
	TypeSubscribed  = "subscribed"  // server → client: the regions held now, and since when
)

// Optional event fields, named in the WebSocket URL's fields= parameter
// (comma-separated). Events carry only what a client needs to apply them
// unless it asks for more: the id and the times are a third of a pixel
// event's bytes, and only tests and latency figures read them.
const (
	FieldID          = "id"          // the outbox id of each event
	FieldCommittedAt = "committedAt" // when the database committed it
	FieldPublishedAt = "publishedAt" // when the relay published it
)

// Resync reasons. A client treats them all alike (reload the snapshot); the
// reason is there for logs and dashboards.
const (
	ReasonEpoch       = "epoch"       // the stream started a new epoch (Redis lost it, or first contact)
	ReasonSlow        = "slow"        // the client's queue overflowed; its backlog was dropped
	ReasonGap         = "gap"         // entries vanished (trimmed) before the gateway could read them
	ReasonTrimmed     = "trimmed"     // the resume position is older than the stream's retention
	ReasonLimit       = "limit"       // the resume gap is larger than the gateway's ReplayLimit
	ReasonAhead       = "ahead"       // the resume position is past the stream's end
	ReasonUnavailable = "unavailable" // Redis could not be read to replay the gap
)

// KindCanary is the kind of the pipeline's canary events; pixel events
// carry no kind on the wire.
const KindCanary = "canary"

// Hello is the first frame of every connection: the position from which the
// connection is guaranteed every later event. Resumed tells a client that
// sent ?since= that its position was accepted: the gap is replayed next and
// it needs no snapshot.
type Hello struct {
	Type    string `json:"type"`
	Epoch   string `json:"epoch"`
	Seq     uint64 `json:"seq"`
	Resumed bool   `json:"resumed"`
}

// Resync tells a client its view has a hole it cannot fill from the stream:
// reload the snapshot; every event after (Epoch, Seq) follows on this
// connection.
type Resync struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Epoch  string `json:"epoch"`
	Seq    uint64 `json:"seq"`
}

// Events carries one or more events in sequence order. From is set on a
// region connection's frames only: the frame holds every event of the
// connection's regions from From through its last event (the others were
// outside them), which is how a filtered stream shows it has no hole.
type Events struct {
	Type   string  `json:"type"`
	From   uint64  `json:"from,omitempty"`
	Events []Event `json:"events"`
}

// Subscribe is a client's subscribe or unsubscribe frame: Regions to add
// or remove, or (subscribe only) All for the whole canvas.
type Subscribe struct {
	Type    string          `json:"type"`
	Regions []canvas.Region `json:"regions,omitempty"`
	All     bool            `json:"all,omitempty"`
}

// Subscribed acknowledges a subscribe or unsubscribe: every event after
// (Epoch, Seq) inside Regions (or anywhere, with All) is delivered on this
// connection.
type Subscribed struct {
	Type    string          `json:"type"`
	Epoch   string          `json:"epoch"`
	Seq     uint64          `json:"seq"`
	All     bool            `json:"all"`
	Regions []canvas.Region `json:"regions,omitempty"`
}

// Event is one committed pixel change. On the WebSocket it is an element of
// an events frame; the API answers a placement with it too, before the relay
// has sequenced it, which is why Seq and PublishedAt may be absent. On the
// WebSocket ID, CommittedAt and PublishedAt are there only when the client
// asked for them (fields=), and a canary carries only Seq and Kind. ID is
// never empty for a stored event.
type Event struct {
	Seq         uint64    `json:"seq,omitempty"` // ≥ 1 on the WebSocket; absent in the API's answer
	ID          string    `json:"id,omitempty"`
	Kind        string    `json:"kind,omitempty"` // only KindCanary; pixel events omit it
	GX          int       `json:"gx"`
	GY          int       `json:"gy"`
	Color       string    `json:"color"` // "#RRGGBB"
	Version     int64     `json:"version"`
	CommittedAt time.Time `json:"committedAt,omitzero"`
	PublishedAt time.Time `json:"publishedAt,omitzero"`
}

// Ping is what a client sends to measure the round trip; the gateway answers
// {"type":"pong"}.
type Ping struct {
	Type string `json:"type"`
}

// ServerFrame is any server → client frame, for a reader that decodes
// before it knows the type: the fields of every type, zero where absent.
type ServerFrame struct {
	Type    string  `json:"type"`
	Epoch   string  `json:"epoch"`
	Seq     uint64  `json:"seq"`
	Resumed bool    `json:"resumed"`
	Reason  string  `json:"reason"`
	From    uint64  `json:"from"`
	Events  []Event `json:"events"`
	// Of subscribed frames.
	All     bool            `json:"all"`
	Regions []canvas.Region `json:"regions"`
}

// Snapshot is the JSON answer of GET /api/canvas: the position, read
// before the pixels, and every painted pixel (the API writes it, clients
// read it).
type Snapshot struct {
	Width    int             `json:"width"`
	Height   int             `json:"height"`
	Position canvas.Position `json:"position"`
	Pixels   []SnapshotPixel `json:"pixels"`
}

// SnapshotPixel is one painted pixel of a Snapshot.
type SnapshotPixel struct {
	GX      int    `json:"gx"`
	GY      int    `json:"gy"`
	Color   string `json:"color"`
	Version int64  `json:"version"`
}
