package telemetry

import (
	"strconv"

	"go.opentelemetry.io/otel/attribute"
)

// Message is one stream entry as the messaging spans describe it: the
// relay's producer span ("publish") and each gateway's consumer span
// ("process") carry the same attributes, built here once.
type Message struct {
	Destination string // the stream key
	Operation   string // messaging.operation.type: "publish" or "process"
	Command     string // messaging.operation.name: the Redis command ("xadd", "xreadgroup")
	Group       string // the consumer group (process); "" for publish
	Seq         uint64 // the entry's sequence number, its message id
	EventID     string // the outbox event's id
	Epoch       string // the stream's epoch
}

// SpanName is the span name the messaging conventions give an operation
// on a destination ("publish " and the stream key).
func (m Message) SpanName() string { return m.Operation + " " + m.Destination }

// Attributes are m's OpenTelemetry attributes (messaging semantic
// conventions, plus pixelflow's event id and epoch).
func (m Message) Attributes() []attribute.KeyValue {
	kv := []attribute.KeyValue{
		attribute.String("messaging.system", "redis"),
		attribute.String("messaging.destination.name", m.Destination),
		attribute.String("messaging.operation.type", m.Operation),
		attribute.String("messaging.operation.name", m.Command),
	}
	if m.Group != "" {
		kv = append(kv, attribute.String("messaging.consumer.group.name", m.Group))
	}
	kv = append(kv,
		attribute.String("messaging.message.id", strconv.FormatUint(m.Seq, 10)),
		attribute.String("pixelflow.event_id", m.EventID),
	)
	if m.Epoch != "" {
		kv = append(kv, attribute.String("pixelflow.epoch", m.Epoch))
	}
	return kv
}
