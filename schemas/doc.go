// Package schemas holds eventline's Avro event schemas (avro/*.avsc, one event
// per file, embedded in the binary), the Go types generated from them
// (events_gen.go, by hamba's avrogen), and the Confluent wire-format serde
// that encodes those types with a registry id and decodes any registered
// writer schema into them (schema evolution both ways).
//
// The compatibility checker lives in schemas/compat.
package schemas
