// Package headers names the Kafka record headers eventline writes and
// reads, defined once for every part and for other readers of the topics:
// the event's own headers (written by the relay from the outbox, read by
// consumer groups to dedupe, route and order), the bookkeeping a consumer
// group adds to its retry and dead-letter copies, and the prefix reserved
// for them. docs/architecture.md ("Headers") describes each.
package headers

import "strings"

// Prefix starts every header eventline owns. A producer's own headers
// (producer.Message.Headers) may not use it, and the relay refuses to
// publish an event that carries one it did not write (except
// CorrelationID).
const Prefix = "eventline-"

// The event's headers: written by the relay on every event.
const (
	EventID          = "eventline-event-id"   // UUID of the event: the dedupe key
	EventType        = "eventline-event-type" // Avro full name of the event
	AggregateType    = "eventline-aggregate-type"
	AggregateID      = "eventline-aggregate-id"      // also the record key
	AggregateVersion = "eventline-aggregate-version" // when the producer gave one
	// CorrelationID is the one eventline header a producer stores itself
	// (producer.Message.CorrelationID).
	CorrelationID = "eventline-correlation-id"
)

// The bookkeeping of retry and dead-letter copies: written by a consumer
// group on the copies it sends to its own retry and dead-letter topics, and
// trusted only there.
const (
	OriginalTopic     = "eventline-original-topic"
	OriginalPartition = "eventline-original-partition"
	OriginalOffset    = "eventline-original-offset"
	OriginalTimestamp = "eventline-original-timestamp"
	Attempt           = "eventline-attempt"
	DueAt             = "eventline-due-at" // unix milliseconds
	FirstFailureAt    = "eventline-first-failure-at"
	ErrorClass        = "eventline-error-class"
	ErrorMessage      = "eventline-error-message" // truncated
	Group             = "eventline-group"
	ReplayCount       = "eventline-replay-count"
)

// Reserved reports whether key uses Prefix.
func Reserved(key string) bool { return strings.HasPrefix(key, Prefix) }

// The CloudEvents attributes of a topic in CloudEvents binary content mode
// (eventline.yaml: cloudevents: {mode: binary}), as the CloudEvents Kafka
// protocol binding names them: each attribute in a header of its name
// prefixed with CEPrefix, the data's media type in ContentType. The relay
// writes them beside the event's own headers; a consumer group reads
// CEID, CESource and CEType of records that carry no eventline headers (a
// foreign CloudEvents producer's).
const (
	CEPrefix      = "ce_"
	CESpecVersion = "ce_specversion" // always CloudEventsSpecVersion
	CEID          = "ce_id"          // the eventline event id
	CESource      = "ce_source"      // the topic's cloudevents.source
	CEType        = "ce_type"        // the Avro full name of the event
	CETime        = "ce_time"        // RFC 3339: when the event was written
	CESubject     = "ce_subject"     // the aggregate id
	// ContentType is the binding's header for the datacontenttype
	// attribute (not prefixed).
	ContentType = "content-type"
)

// Values of the CloudEvents headers the relay writes.
const (
	CloudEventsSpecVersion = "1.0"
	// AvroContentType: the value is Avro in Confluent wire format (magic
	// byte 0, 4-byte schema id, Avro binary body), as on every topic.
	AvroContentType = "application/avro"
)
