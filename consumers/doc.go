// Package consumers runs consumer groups whose handlers apply each event
// exactly once in PostgreSQL (a dedupe row in the same transaction as the
// effects), commit offsets only after that transaction, and route failures
// through delay retry topics to a dead-letter topic.
//
// Status (issue #5): the idempotent apply core is here (Applier.ApplyBatch:
// one transaction per partition batch, a savepoint and a dedupe row per
// record); the group runtime, retry chain, DLT and tools are still to come.
// See docs/architecture.md.
package consumers
