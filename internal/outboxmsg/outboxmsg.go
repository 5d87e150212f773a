// Package outboxmsg is the content of the logical decoding messages the
// producer writes in logical mode (pg_logical_emit_message) and the relay
// reads from its replication slot: one event with its routing envelope,
// the same fields as an eventline_outbox row.
//
// The layout is a version byte followed by an Avro record (hamba/avro), so
// a later version can add fields without a hand-written codec; a relay
// refuses versions it does not know instead of guessing.
package outboxmsg

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas"
)

// Version is the first byte of every message this package writes.
const Version byte = 1

// Prefix is the logical decoding message prefix of the outbox in schema: the
// relay ignores messages with any other prefix (other applications', other
// schemas').
func Prefix(schema string) string { return "eventline:" + schema }

// HeartbeatPrefix is the prefix of the relay's non-transactional heartbeat
// messages for schema.
func HeartbeatPrefix(schema string) string { return "eventline-hb:" + schema }

// Event is one outbox event.
type Event struct {
	Topic            string   `avro:"topic"`
	Key              []byte   `avro:"key"`
	Value            []byte   `avro:"value"`
	EventID          [16]byte `avro:"event_id"`
	EventType        string   `avro:"event_type"`
	AggregateType    string   `avro:"aggregate_type"`
	AggregateID      string   `avro:"aggregate_id"`
	AggregateVersion *int64   `avro:"aggregate_version"`
	// Headers are the extra record headers in order (trace context,
	// correlation id, the producer's Headers): an Avro array, so the relay
	// builds the record's headers without parsing JSON (that parse was a
	// fifth of the logical relay's CPU).
	Headers []Header `avro:"headers"`
}

// Header is one record header.
type Header struct {
	Key   string `avro:"key"`
	Value string `avro:"value"`
}

// HeadersJSON is hs as the outbox's headers column holds them (a JSON array
// of [key, value] pairs): for the parked table.
func HeadersJSON(hs []Header) []byte {
	pairs := make([][2]string, len(hs))
	for i, h := range hs {
		pairs[i] = [2]string{h.Key, h.Value}
	}
	b, _ := json.Marshal(pairs) // strings only: cannot fail
	return b
}

// HeadersFromJSON reads the outbox's headers column.
func HeadersFromJSON(b []byte) ([]Header, error) {
	var pairs [][2]string
	if err := json.Unmarshal(b, &pairs); err != nil {
		return nil, err
	}
	hs := make([]Header, len(pairs))
	for i, p := range pairs {
		hs[i] = Header{Key: p[0], Value: p[1]}
	}
	return hs, nil
}

var schema = avro.MustParse(`{"type":"record","name":"OutboxEvent","namespace":"eventline.outbox","fields":[
	{"name":"topic","type":"string"},
	{"name":"key","type":"bytes"},
	{"name":"value","type":"bytes"},
	{"name":"event_id","type":{"type":"fixed","name":"EventID","size":16}},
	{"name":"event_type","type":"string"},
	{"name":"aggregate_type","type":"string"},
	{"name":"aggregate_id","type":"string"},
	{"name":"aggregate_version","type":["null","long"]},
	{"name":"headers","type":{"type":"array","items":{"type":"record","name":"Header","fields":[
		{"name":"key","type":"string"},{"name":"value","type":"string"}]}}}
]}`)

// MaxSize bounds a message the relay decodes: PostgreSQL's own limit on a
// bytea (1 GB) is far beyond what Kafka takes; Kafka's default
// message.max.bytes is about 1 MB, a topic can raise it, 64 MiB is beyond
// any sane setting.
const MaxSize = 64 << 20

var cfg = avro.Config{MaxByteSliceSize: MaxSize, MaxSliceAllocSize: MaxSize}.Freeze()

// Encode returns the message content of e.
func Encode(e *Event) ([]byte, error) {
	b, err := cfg.Marshal(schema, e)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+len(b))
	out[0] = Version
	copy(out[1:], b)
	return out, nil
}

// ErrMalformed: the content is not an event this version can read.
var ErrMalformed = errors.New("malformed outbox message")

// Decode reads a message content written by Encode.
func Decode(b []byte) (Event, error) {
	var e Event
	switch {
	case len(b) == 0:
		return e, fmt.Errorf("%w: empty", ErrMalformed)
	case len(b) > MaxSize:
		return e, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	case b[0] != Version:
		return e, fmt.Errorf("%w: version %s (this relay reads %d; upgrade it)", ErrMalformed, strconv.Itoa(int(b[0])), Version)
	}
	// Anyone who may call pg_logical_emit_message writes these bytes: a
	// header count alone would make hamba/avro allocate gigabytes.
	if err := (schemas.Budget{}).Check(schema, b[1:]); err != nil {
		return e, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := cfg.Unmarshal(schema, b[1:], &e); err != nil {
		return e, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return e, nil
}
