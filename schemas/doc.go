// Package schemas holds eventline's Avro event schemas (one .avsc per event),
// the Go types generated from them, and the compatibility checker behind
// `eventline schemas`.
//
// Status: planned (issue #3). The foundation's round trip uses its own
// schema (internal/roundtrip.PingSchema).
package schemas
