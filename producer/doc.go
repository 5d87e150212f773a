// Package producer appends Avro-encoded events to the transactional outbox
// (eventline_outbox) inside the caller's pgx transaction, so an event is
// stored exactly when the business write commits.
//
// Status: planned (issue #4). See docs/architecture.md.
package producer
