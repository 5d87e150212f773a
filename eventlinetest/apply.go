package eventlinetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/schemas"
)

// Applier runs a consumer group's handlers on typed events inside a test's
// transaction, through the consumer runtime's own apply path, as
// rivertest's Worker does for a River worker: no Kafka, no registry, no
// group running.
type Applier struct {
	cfg    consumers.Config
	topic  string
	src    *memorySchemas
	mu     sync.Mutex
	offset int64 // the next record's
}

// NewApplier returns an Applier applying as a group configured by cfg
// would. Only the fields that decide how an event is applied count: Group
// and Schema (the dedupe scope and table), Mux (or Handler, BatchHandler
// and Events), EventID and KeyOrder, checked as New checks them; the
// others (Topics' first is the records' topic, default "eventlinetest";
// Brokers, DB, Serde...) are ignored, so the Config a service builds for
// its group can be passed as it is. A Config that New would refuse fails
// tb at the first Apply.
func NewApplier(tb testing.TB, cfg consumers.Config) *Applier {
	tb.Helper()
	topic := "eventlinetest"
	if len(cfg.Topics) > 0 {
		topic = cfg.Topics[0]
	}
	src := &memorySchemas{ids: map[string]int{}}
	cfg.Serde = schemas.NewSerde(src)
	return &Applier{cfg: cfg, topic: topic, src: src}
}

// Outcome is what became of an applied event.
type Outcome string

const (
	// Applied: the handler ran; its effects and the event's dedupe row are
	// in the transaction.
	Applied Outcome = "applied"
	// Duplicate: the group's dedupe row for the event id was already there
	// (a redelivery); the handler did not run.
	Duplicate Outcome = "duplicate"
	// Skipped: the Mux has no handler for the event's type and no
	// Unhandled; nothing was written.
	Skipped Outcome = "skipped"
	// Failed: the handler (or decoding) failed; the transaction is as it
	// was before Apply. At runtime the event would take the retry chain,
	// or go to the dead-letter topic if the error is permanent.
	Failed Outcome = "failed"
	// Deferred: with KeyOrder, an earlier event of its key is in the
	// group's retry chain; at runtime it would follow it there.
	Deferred Outcome = "deferred"
)

// outcomeOf is the runtime's outcome in this package's words.
func outcomeOf(o hook.Outcome) Outcome {
	switch o {
	case hook.Applied:
		return Applied
	case hook.Duplicate:
		return Duplicate
	case hook.Skipped:
		return Skipped
	case hook.Deferred:
		return Deferred
	}
	return Failed
}

// ApplyResult is what Apply did.
type ApplyResult struct {
	Outcome Outcome
	// EventID is the event's dedupe key, as the runtime chose it.
	EventID uuid.UUID
	// EventType is the event's type (its Avro full name).
	EventType string
	// Record is the Kafka record the event was encoded into: headers as
	// the relay writes them, the value in Confluent's wire format.
	Record *kgo.Record
}

// ApplyOption changes the record Apply builds.
type ApplyOption func(*applyOptions)

type applyOptions struct {
	eventID          uuid.UUID
	aggType, aggID   string
	aggVersion       int64
	hasVersion       bool
	headers          []kgo.RecordHeader
	withoutEventline bool
}

// WithEventID sets the event id (the eventline-event-id header); by
// default every Apply is a new event with a random id. Applying the same
// id again is a redelivery.
func WithEventID(id uuid.UUID) ApplyOption { return func(o *applyOptions) { o.eventID = id } }

// WithAggregate sets the aggregate headers and the record's key (the
// aggregate id), as producer.Message's fields of the same names do.
func WithAggregate(aggregateType, aggregateID string, version int64) ApplyOption {
	return func(o *applyOptions) {
		o.aggType, o.aggID, o.aggVersion, o.hasVersion = aggregateType, aggregateID, version, true
	}
}

// WithHeader adds a record header (a correlation id, another producer's
// message id for Config.EventID...).
func WithHeader(key, value string) ApplyOption {
	return func(o *applyOptions) { o.headers = append(o.headers, kgo.RecordHeader{Key: key, Value: []byte(value)}) }
}

// AsForeign builds the record another producer would write: no
// eventline-* headers, so the event type is the writer schema's full name
// and the dedupe key is Config.EventID's answer, or DefaultEventID's (the
// record's topic, partition and offset: each Apply is a new record, and
// Redeliver delivers one again).
func AsForeign() ApplyOption { return func(o *applyOptions) { o.withoutEventline = true } }

// Apply encodes payload with its schema (Confluent framing, the schema id
// of the Applier's in-memory registry) into a record as the relay writes
// it, and applies it in tx as the group would: decoded with the group's
// types into the same payload and Event a handler receives at runtime,
// under a savepoint, with the event's dedupe row. The test reads the
// handler's effects through tx.
//
// The error is the handler's (or decoding's) failure, with Outcome Failed
// and tx rolled back to the savepoint; anything else (a refused Config, a
// broken transaction, a payload its schema cannot encode) fails tb.
func (a *Applier) Apply(ctx context.Context, tb testing.TB, tx pgx.Tx, payload schemas.Event, opts ...ApplyOption) (*ApplyResult, error) {
	tb.Helper()
	var o applyOptions
	for _, opt := range opts {
		opt(&o)
	}
	rec, err := a.record(payload, o)
	if err != nil {
		tb.Fatalf("eventlinetest: Apply: %v", err)
		return nil, err
	}
	return a.Redeliver(ctx, tb, tx, rec)
}

// Redeliver applies rec, a record an earlier Apply returned, again: a
// redelivery, which the group's dedupe row turns into a Duplicate once
// the first delivery was applied.
func (a *Applier) Redeliver(ctx context.Context, tb testing.TB, tx pgx.Tx, rec *kgo.Record) (*ApplyResult, error) {
	tb.Helper()
	r, err := hook.ApplyRecord(ctx, tx, a.cfg, rec)
	if err != nil {
		tb.Fatalf("eventlinetest: Apply: %v", err)
		return nil, err
	}
	res := &ApplyResult{Outcome: outcomeOf(r.Outcome), EventID: r.EventID, EventType: r.EventType, Record: rec}
	return res, r.Failure
}

// record builds payload's record.
func (a *Applier) record(payload schemas.Event, o applyOptions) (*kgo.Record, error) {
	if payload == nil {
		return nil, fmt.Errorf("nil payload")
	}
	schema := payload.Schema()
	value, err := schemas.Encode(a.src.id(schema.String()), schema, payload)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	offset := a.offset
	a.offset++
	a.mu.Unlock()
	rec := &kgo.Record{Topic: a.topic, Offset: offset, Timestamp: time.Now(), Key: []byte(o.aggID), Value: value}
	if !o.withoutEventline {
		id := o.eventID
		if id == uuid.Nil {
			id = uuid.New()
		}
		rec.Headers = append(rec.Headers,
			kgo.RecordHeader{Key: headers.EventID, Value: []byte(id.String())},
			kgo.RecordHeader{Key: headers.EventType, Value: []byte(schemas.FullName(schema))},
			kgo.RecordHeader{Key: headers.AggregateType, Value: []byte(o.aggType)},
			kgo.RecordHeader{Key: headers.AggregateID, Value: []byte(o.aggID)})
		if o.hasVersion {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: headers.AggregateVersion, Value: []byte(strconv.FormatInt(o.aggVersion, 10))})
		}
	}
	rec.Headers = append(rec.Headers, o.headers...)
	return rec, nil
}

// memorySchemas is the Applier's registry: an id per schema text.
type memorySchemas struct {
	mu    sync.Mutex
	ids   map[string]int
	texts []string // id i+1
}

func (m *memorySchemas) id(text string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.ids[text]; ok {
		return id
	}
	m.texts = append(m.texts, text)
	m.ids[text] = len(m.texts)
	return len(m.texts)
}

// SchemaByID answers as a registry does, 40403 for an unknown id.
func (m *memorySchemas) SchemaByID(_ context.Context, id int) (sr.Schema, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id < 1 || id > len(m.texts) {
		return sr.Schema{}, &sr.ResponseError{StatusCode: 404, ErrorCode: 40403, Message: "Schema not found"}
	}
	return sr.Schema{Schema: m.texts[id-1], Type: sr.TypeAvro}, nil
}
