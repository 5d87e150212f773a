// Package consumers runs consumer groups whose handlers apply each event
// exactly once in PostgreSQL (a dedupe row in the same transaction as the
// effects), commit offsets only after that transaction, and route failures
// through delay retry topics to a dead-letter topic.
//
// Status: planned (issue #5). See docs/architecture.md.
package consumers
