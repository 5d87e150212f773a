package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/schemas"
)

// Event is what a handler receives: the record's envelope and its payload,
// decoded into the Go type registered for its event type (Config.Events,
// or Handle on a Mux), read with that type's schema (reader-side schema
// resolution against the writer schema the record names), or, for a type
// without one, into the generic form (map[string]any and friends, read
// with the writer schema).
type Event struct {
	// ID is the dedupe key: the eventline-event-id header, or for a record
	// written by another producer Config.EventID's answer, or by default
	// CloudEventID for a CloudEvents record (ce_source and ce_id) and for
	// any other an id derived from where the record first appeared (its
	// source topic, partition and offset), the same on every redelivery
	// and on every retry copy. See DefaultEventID.
	ID uuid.UUID
	// Type is the event's type: the eventline-event-type header (the Avro
	// full name); for a record without it that a CloudEvents producer
	// wrote (a ce_specversion header), its ce_type; else the writer
	// schema's full name. A CloudEvents type that is not the Avro full name
	// of a registered Go type ("com.acme.order.created") still decodes
	// into the Go type of the writer schema's full name, and a Mux hands
	// it to that type's handler: handlers, Mux included, are chosen by the
	// payload's Avro full name, Type says what the producer called it.
	Type string
	// AggregateType, AggregateID and AggregateVersion come from the
	// eventline-aggregate-* headers; empty for other producers' records
	// (whose Key usually plays the aggregate id's part).
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	// Topic, Partition, Offset and Timestamp locate the record as read: a
	// retry topic's for retries (Origin gives the source's).
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	// Key is the record's key.
	Key []byte
	// Attempt counts the failed attempts before this one: 0 on the source
	// topic, n on retry.n.
	Attempt int
	// Headers are the record's headers (the last value of a repeated key).
	Headers map[string]string
	// Payload is the decoded value: a pointer to the registered Go type,
	// or the generic form.
	Payload any

	rec *kgo.Record
	env envelope
	// avroName: the Avro full name the payload was decoded by, which
	// chooses the Mux handler (Type, except for a CloudEvents type that
	// names no Go type: the writer schema's).
	avroName string
}

// Record returns the Kafka record as read (key, value bytes, every header
// in order). Handlers must not modify it.
func (e *Event) Record() *kgo.Record { return e.rec }

// Origin is where the event first appeared: the source topic, partition
// and offset (for a retry copy, those of the record that first failed).
func (e *Event) Origin() (topic string, partition int32, offset int64) {
	return e.env.origin.topic, e.env.origin.partition, e.env.origin.offset
}

// HandlerFunc applies one event inside tx, the transaction that also holds
// the event's dedupe row. Returning an error undoes both (the handler's
// statements roll back to a savepoint); wrap it in Permanent to skip retries.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, ev *Event) error

// BatchHandlerFunc applies several events (one partition's, in order) in
// one call, typically with set-based SQL; it is how a handler reaches tens
// of thousands of events per second. If it fails, the runtime applies the
// same events again in smaller groups, down to one, each under its own
// savepoint, to isolate the failing one.
type BatchHandlerFunc func(ctx context.Context, tx pgx.Tx, evs []*Event) error

// EventIDFunc chooses the dedupe key of a record that carries no
// eventline-event-id header (one written by another producer), from the
// decoded event: a business id in the payload, a header another producer
// sets. It must give the same answer every time it sees the same record.
// An error sends the record to the dead-letter topic (class no-event-id).
type EventIDFunc func(ev *Event) (uuid.UUID, error)

// idSpace is the UUID namespace of derived ids (random, fixed forever:
// changing it would re-apply every record after an upgrade).
var idSpace = uuid.MustParse("6f1d8f52-8a4c-4e8e-9a51-2d0c3e7b9c41")

// DefaultEventID is the dedupe key of a record without an
// eventline-event-id header when Config.EventID is not set: a name-based
// UUID (version 5) of the record's origin, "topic/partition/offset" where
// it first appeared. Redeliveries and the group's retry copies (which carry
// their origin in eventline-original-* headers) get the same id, so the
// record is applied once. Two records are only ever the same event if they
// are the same record: a producer that writes one business event twice
// (its own retries without idempotence) gets it applied twice unless
// EventID takes a business id instead.
func DefaultEventID(ev *Event) (uuid.UUID, error) {
	o := ev.env.origin
	return uuid.NewSHA1(idSpace, fmt.Appendf(nil, "%s/%d/%d", o.topic, o.partition, o.offset)), nil
}

// EventIDFromHeader takes the dedupe key from header name: its value when
// it is a UUID, else a name-based UUID of the value (any string id works).
// A record without the header is an error.
func EventIDFromHeader(name string) EventIDFunc {
	return func(ev *Event) (uuid.UUID, error) {
		v, ok := ev.Headers[name]
		if !ok || v == "" {
			return uuid.Nil, fmt.Errorf("no %s header", name)
		}
		return IDFromString(v), nil
	}
}

// CloudEventID is the dedupe key of a record a CloudEvents producer wrote
// (a ce_specversion header, no eventline-event-id) when Config.EventID is
// not set. CloudEvents makes source + id unique per event, so: ce_id when
// it is a UUID (unique whatever the source, and an eventline event's own
// id), else a name-based UUID of ce_source and ce_id together (two
// producers both counting "1", "2"... are not one event). A missing or
// empty ce_id or ce_source, or one over 1 KiB, is an error (the record
// goes to the dead-letter topic, class no-event-id).
func CloudEventID(ev *Event) (uuid.UUID, error) {
	id, err := ceAttr(ev.Headers, headers.CEID)
	if err != nil {
		return uuid.Nil, err
	}
	if u, err := uuid.Parse(id); err == nil {
		return u, nil
	}
	src, err := ceAttr(ev.Headers, headers.CESource)
	if err != nil {
		return uuid.Nil, err
	}
	// Length-prefixed: no (source, id) pair reads as another.
	return IDFromString(fmt.Sprintf("ce:%d:%s%s", len(src), src, id)), nil
}

// IDFromString returns s as a UUID when it is one, else a name-based UUID
// of s: for EventIDFunc implementations over string business ids.
func IDFromString(s string) uuid.UUID {
	if id, err := uuid.Parse(s); err == nil {
		return id
	}
	return uuid.NewSHA1(idSpace, []byte(s))
}

// Mux applies events with typed handlers, one per event type, and is what
// a group takes for them (Config.Mux): the types it handles are the types
// payloads decode into, so the two cannot disagree.
//
//	mux := consumers.NewMux()
//	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, p *payments.PaymentCaptured) error {
//		_, err := tx.Exec(ctx, `UPDATE ledgers SET ...`, p.PaymentID)
//		return err
//	})
//	g, err := consumers.New(consumers.Config{..., Mux: mux})
//
// Events of a type without a handler are skipped by default: no handler
// runs, no dedupe row is written, the offset moves on, and the group
// counts them per event type (Stats.SkippedByType, the
// eventline_consumer_skipped metric) and logs the first one of each type.
// Skipping is the default because a topic is often shared: other teams'
// event types, and types added to the topic after this service was
// written, are not this group's failures, and dead-lettering them would
// bury its real failures. Acknowledging them without a trace would hide a
// handler that was forgotten; the counter shows it. Unhandled chooses
// otherwise, e.g. the dead-letter topic for a topic that carries only this
// group's types.
//
// Register handlers before the group runs; a Mux is not modified after.
type Mux struct {
	handlers  map[string]HandlerFunc
	events    []schemas.Event
	unhandled HandlerFunc
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: map[string]HandlerFunc{}} }

// Handle registers fn for the event type of T (a generated type such as
// *payments.PaymentCaptured; its Avro full name is the type). fn receives
// the payload decoded into T, read with T's schema. Registering a type
// twice panics, as http.ServeMux does.
func Handle[E any, T interface {
	*E
	schemas.Event
}](m *Mux, fn func(ctx context.Context, tx pgx.Tx, ev *Event, payload T) error) {
	proto := T(new(E))
	name := schemas.FullName(proto.Schema())
	if _, dup := m.handlers[name]; dup {
		panic("consumers: Handle: a handler for " + name + " is already registered")
	}
	m.events = append(m.events, proto)
	m.handlers[name] = func(ctx context.Context, tx pgx.Tx, ev *Event) error {
		p, ok := ev.Payload.(T)
		if !ok {
			return Permanent(fmt.Errorf("event %s: payload is %T, want %T", ev.Type, ev.Payload, proto))
		}
		return fn(ctx, tx, ev, p)
	}
}

// Unhandled makes fn the handler of every event type without one, instead
// of skipping them: it runs like any handler, in the apply transaction
// with the event's dedupe row, and its error takes the retry chain. For
// example, to dead-letter them:
//
//	mux.Unhandled(func(_ context.Context, _ pgx.Tx, ev *consumers.Event) error {
//		return consumers.Permanent(fmt.Errorf("no handler for %s", ev.Type))
//	})
//
// Such events reach fn in the generic form (map[string]any), read with the
// writer's schema.
func (m *Mux) Unhandled(fn HandlerFunc) { m.unhandled = fn }

// skips reports whether events of type typ are skipped: no handler and no
// Unhandled.
func (m *Mux) skips(typ string) bool {
	_, ok := m.handlers[typ]
	return !ok && m.unhandled == nil
}

// handlerType is what a Mux dispatches ev by: the Avro full name its
// payload was decoded by.
func (ev *Event) handlerType() string {
	if ev.avroName != "" {
		return ev.avroName
	}
	return ev.Type
}

// handler dispatches by the payload's Avro full name (Event.Type, except
// for a CloudEvents type that names no Go type; skipped types never reach
// it).
func (m *Mux) handler() HandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, ev *Event) error {
		if h, ok := m.handlers[ev.handlerType()]; ok {
			return h(ctx, tx, ev)
		}
		if m.unhandled != nil {
			return m.unhandled(ctx, tx, ev)
		}
		return nil
	}
}
