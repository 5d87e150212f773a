package consumers

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/schemas"
)

// envelope is what the runtime reads of a record's headers, once, when
// the record enters applier.apply: where the event first appeared, whether
// the record is a copy, its attempt and due time. The chain, forwarding and
// accounting take it from there instead of reading the headers again.
type envelope struct {
	origin    origin
	hasOrigin bool // a retry or DLT copy: eventline-original-* headers
	attempt   int
	due       time.Time // zero: now
}

// envelopeOf reads rec's envelope for group: its bookkeeping headers count
// only on the group's own retry topics and DLT (see copyTopicSource).
func envelopeOf(rec *kgo.Record, group string) envelope {
	o, isCopy := originOf(rec, group)
	if !isCopy {
		return envelope{origin: o}
	}
	return envelope{origin: o, hasOrigin: true, attempt: min(max(attemptOf(rec), 1), maxAttempt), due: dueAt(rec)}
}

// maxAttempt bounds the attempt a copy's header may claim.
const maxAttempt = 1 << 20

// isSource: the record is on its source topic, not a retry copy.
func (e envelope) isSource() bool { return !e.hasOrigin }

// item is a record and its envelope, as the apply path passes them.
type item struct {
	rec *kgo.Record
	env envelope
}

// itemsOf reads each record's envelope: the one place the runtime parses
// the bookkeeping headers of a record it processes.
func itemsOf(recs []*kgo.Record, group string) []item {
	items := make([]item, len(recs))
	for i, r := range recs {
		items[i] = item{rec: r, env: envelopeOf(r, group)}
	}
	return items
}

// typeSet maps Avro full names to the Go types payloads decode into.
type typeSet map[string]reflect.Type

// newTypeSet indexes evs (zero values of generated types, pointers).
func newTypeSet(evs []schemas.Event) (typeSet, error) {
	ts := typeSet{}
	for i, ev := range evs {
		t := reflect.TypeOf(ev)
		if ev == nil || t.Kind() != reflect.Pointer {
			return nil, fmt.Errorf("consumers: Events[%d] is %T, want a pointer to a generated type", i, ev)
		}
		name := schemas.FullName(ev.Schema())
		if prev, ok := ts[name]; ok && prev != t {
			return nil, fmt.Errorf("consumers: Events lists %s twice, as %s and %s", name, prev, t)
		}
		ts[name] = t
	}
	return ts, nil
}

// new returns a fresh value of name's Go type.
func (ts typeSet) new(name string) (schemas.Event, bool) {
	t, ok := ts[name]
	if !ok {
		return nil, false
	}
	return reflect.New(t.Elem()).Interface().(schemas.Event), true
}

// decode reads a record into an Event: envelope, dedupe id, type and
// payload. Errors are permanent (the record goes to the DLT) except a
// registry that cannot be reached.
//
// The type: the eventline-event-type header; else, for a CloudEvents
// record (a ce_specversion header: a foreign CloudEvents producer's),
// ce_type; else the writer schema's full name. The Go type the payload
// decodes into (and the Mux handler) is chosen by the Avro full name:
// Type when a Go type is registered under it, and for a CloudEvents record
// whose ce_type names none (ce_type is free text, "com.acme.order.created")
// the writer schema's full name, so a typed handler receives it while Type
// says what the producer called it.
func (a *applier) decode(ctx context.Context, it item) (*Event, error) {
	rec := it.rec
	ev := &Event{rec: rec, env: it.env, Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp, Key: rec.Key, Headers: make(map[string]string, len(rec.Headers))}
	ev.Attempt = ev.env.attempt
	for _, h := range rec.Headers {
		ev.Headers[h.Key] = string(h.Value)
	}
	ev.Type = ev.Headers[headers.EventType]
	ev.AggregateType = ev.Headers[headers.AggregateType]
	ev.AggregateID = ev.Headers[headers.AggregateID]
	if v := ev.Headers[headers.AggregateVersion]; v != "" {
		ev.AggregateVersion, _ = strconv.ParseInt(v, 10, 64)
	}
	if _, _, err := schemas.SplitHeader(rec.Value); err != nil {
		return nil, err
	}
	ev.avroName = ev.Type
	_, ce := ev.Headers[headers.CESpecVersion]
	if ev.Type == "" && ce {
		t, err := ceAttr(ev.Headers, headers.CEType)
		if err != nil {
			return nil, Permanent(err)
		}
		ev.Type = t
		if _, ok := a.types[t]; ok {
			ev.avroName = t
		}
	}
	if ev.avroName == "" {
		// Another producer's record: the writer schema names it (the
		// member the value holds, for a union of event types).
		t, err := a.serde.EventType(ctx, rec.Value)
		if err != nil {
			return nil, err
		}
		ev.avroName = t
		if ev.Type == "" {
			ev.Type = ev.avroName
		}
	}
	if typed, ok := a.types.new(ev.avroName); ok {
		if err := a.serde.Decode(ctx, rec.Value, typed); err != nil {
			return nil, err
		}
		ev.Payload = typed
	} else {
		generic, _, err := a.serde.DecodeGeneric(ctx, rec.Value)
		if err != nil {
			return nil, err
		}
		ev.Payload = generic
	}
	if err := a.eventID(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// maxCEAttr bounds the CloudEvents attributes a group reads from a foreign
// record (ce_id, ce_source, ce_type): they become the dedupe key and the
// event type (a metric label, a span attribute), so a forged megabyte is
// refused rather than carried along.
const maxCEAttr = 1024

// ceAttr returns the CloudEvents attribute header name of a record, which
// must be there, non-empty and at most maxCEAttr bytes.
func ceAttr(hs map[string]string, name string) (string, error) {
	v, ok := hs[name]
	switch {
	case !ok || v == "":
		return "", fmt.Errorf("CloudEvents record (%s present) without a %s header: the binding requires it", headers.CESpecVersion, name)
	case len(v) > maxCEAttr:
		return "", fmt.Errorf("CloudEvents record: %s header of %d bytes (at most %d): %q", name, len(v), maxCEAttr, truncate(v, 64))
	}
	return v, nil
}

// eventID sets ev.ID: the eventline-event-id header when there is one
// (it must be a UUID), else the EventID hook's answer, else for a
// CloudEvents record (a ce_specversion header) CloudEventID, else
// DefaultEventID.
func (a *applier) eventID(ev *Event) error {
	if v, ok := ev.Headers[headers.EventID]; ok {
		id, err := uuid.Parse(v)
		if err != nil {
			return Permanent(fmt.Errorf("%w: %q", ErrNoEventID, truncate(v, 64)))
		}
		ev.ID = id
		return nil
	}
	idf := a.idFunc
	if idf == nil {
		idf = DefaultEventID
		if _, ce := ev.Headers[headers.CESpecVersion]; ce {
			idf = CloudEventID
		}
	}
	id, err := idf(ev)
	if err != nil {
		return Permanent(fmt.Errorf("%w: %w", ErrNoEventID, err))
	}
	if id == uuid.Nil {
		return Permanent(fmt.Errorf("%w: EventID returned the nil UUID", ErrNoEventID))
	}
	ev.ID = id
	return nil
}
