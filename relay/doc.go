// Package relay drains the outbox into Kafka: one leader per outbox (a
// PostgreSQL advisory lock), records keyed by aggregate id in the Confluent
// wire format, rows deleted only after every ack.
//
// Status: planned (issue #4). See docs/architecture.md.
package relay
