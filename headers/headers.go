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
