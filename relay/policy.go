package relay

// The publishing policy: what the relay agrees to produce. Whoever can
// write an event (INSERT on the outbox in poll mode; pg_logical_emit_message
// in logical mode) chooses its topic, key, value and headers, so without a
// check a writer could reach any topic the relay's Kafka principal can:
// the registry's _schemas, a group's retry topic with a due time in the
// year 3000, a topic that does not exist (the producer would wait for it
// for ever). Every event is checked against the pipeline before it is
// produced; one that fails is parked with the reason, never retried.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

// ErrNotAllowed is the cause of a parked event that the pipeline does not
// allow (its parked row's error starts with this text): a topic eventline.yaml
// does not list, an event type not routed to its topic, a value not in
// Confluent framing, a header only eventline writes. Requeueing such an
// event parks it again unless eventline.yaml changed.
var ErrNotAllowed = errors.New("not allowed by the pipeline")

// policy holds the pipeline's routes: topic -> event types.
type policy struct {
	routes map[string]map[string]bool
	topics string // for the error: the pipeline's topics, listed
	// ceSource: the topics in CloudEvents binary mode -> their ce_source.
	ceSource map[string]string
}

func newPolicy(p *pipeline.Pipeline) policy {
	pol := policy{routes: map[string]map[string]bool{}, ceSource: map[string]string{}}
	var names []string
	for _, t := range p.Topics {
		evs := map[string]bool{}
		for _, e := range t.Events {
			evs[e] = true
		}
		pol.routes[t.Name] = evs
		if t.CloudEvents != nil {
			src := t.CloudEvents.Source
			if src == "" { // a Pipeline built in code without ApplyDefaults
				src = pipeline.DefaultCloudEventsSource(t.Name)
			}
			pol.ceSource[t.Name] = src
		}
		names = append(names, t.Name)
	}
	pol.topics = strings.Join(names, ", ")
	return pol
}

// check returns nil when o may be produced, else an ErrNotAllowed naming
// the first rule it breaks. It reads the row only (no I/O): it runs for
// every event.
func (p policy) check(o *outboxRow) error {
	evs, ok := p.routes[o.topic]
	switch {
	case o.topic == "":
		return fmt.Errorf("%w: the event names no topic", ErrNotAllowed)
	case !ok:
		return fmt.Errorf("%w: topic %q is not a pipeline topic (eventline.yaml lists %s)", ErrNotAllowed, clip(o.topic), p.topics)
	case !evs[o.eventType]:
		return fmt.Errorf("%w: event type %q is not routed to topic %s", ErrNotAllowed, clip(o.eventType), o.topic)
	}
	// Every consumer of a pipeline topic expects magic byte 0 and a schema
	// id: anything else would go to each group's DLT.
	if _, _, err := schemas.SplitHeader(o.value); err != nil {
		return fmt.Errorf("%w: the value is not in Confluent wire format: %v", ErrNotAllowed, err)
	}
	_, ce := p.ceSource[o.topic]
	for _, h := range o.hdrs {
		if err := checkHeader(h.Key); err != nil {
			return err
		}
		if ce {
			if err := checkCEHeader(h.Key); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkCEHeader: on a topic in CloudEvents binary mode, the relay alone
// writes the attributes it sets (a stored ce_id would give CloudEvents
// readers a second, forged id) and content-type; a producer's other ce_*
// header is an extension attribute, so its name must be one the spec
// allows (lower-case ASCII letters and digits: an SDK refuses the whole
// event otherwise, and lower-cases names, so "CE_ID" would pass as ce_id).
func checkCEHeader(key string) error {
	lower := strings.ToLower(key)
	if lower == headers.ContentType {
		return fmt.Errorf("%w: header %q is written by the relay on a CloudEvents topic", ErrNotAllowed, clip(key))
	}
	if !strings.HasPrefix(lower, headers.CEPrefix) {
		return nil
	}
	name := key[len(headers.CEPrefix):]
	switch {
	case key != lower || name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") != "":
		return fmt.Errorf("%w: header %q: a CloudEvents attribute's name is lower-case letters and digits only", ErrNotAllowed, clip(key))
	case relayAttrs[name]:
		return fmt.Errorf("%w: header %q is written by the relay on a CloudEvents topic", ErrNotAllowed, clip(key))
	}
	return nil
}

// relayAttrs: the CloudEvents attributes the relay sets (datacontenttype
// and partitionkey through content-type and the key), or that the spec
// reserves (data).
var relayAttrs = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "time": true, "subject": true,
	"datacontenttype": true, "partitionkey": true, "data": true,
}

// checkHeader refuses the eventline- headers a producer never stores: the
// relay writes the event's own, and the consumers' retry bookkeeping
// (due time, origin, attempt) must not be forgeable upstream.
func checkHeader(key string) error {
	if headers.Reserved(key) && key != headers.CorrelationID {
		return fmt.Errorf("%w: header %q is reserved for eventline", ErrNotAllowed, clip(key))
	}
	return nil
}

// checkRow is check for a row read from the table: its headers are JSON,
// decoded here once (record then uses them).
func (p policy) checkRow(o *outboxRow) error {
	if o.hdrs == nil {
		hs, err := outboxmsg.HeadersFromJSON(o.headers)
		if err != nil {
			return fmt.Errorf("%w: %v", errBadHeaders, err)
		}
		o.hdrs = hs
	}
	return p.check(o)
}

// clip bounds a writer-chosen string quoted in an error (it is stored in
// the parked row and logged).
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
