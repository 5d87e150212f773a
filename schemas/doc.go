// Package schemas is eventline's Avro layer, for any team's schemas:
//
//   - Catalog: a team's .avsc files (one named type per file: an event's
//     record, or a shared type such as Money that events use by name),
//     loaded from directories (LoadCatalogDir) or an fs.FS such as an
//     embed.FS (LoadCatalog). Each entry keeps the file's exact text, which
//     is what the producer and `eventline schemas register` register, so
//     CI and services agree byte for byte; a file using another file's
//     types is registered with schema references to them
//     (Catalog.RegistrySchema, which also says how their subjects are
//     named).
//   - Event: what generated Go types (hamba's avrogen with -fullschema)
//     implement; Catalog.Of checks a type against its file.
//   - Serde: the Confluent wire format (magic byte 0, 4-byte big-endian
//     schema id, Avro body). Encode frames a value under an id; Serde
//     decodes values written with any schema the registry knows, by any
//     producer, into a Go type (reader-side schema resolution) or into the
//     generic form. Writer schemas and resolutions are cached. Writer
//     schemas with references are resolved through the registry
//     (ReferenceSource), and a writer that is a union of event types
//     (Confluent's several types in one topic) decodes as the member the
//     value holds (Serde.EventType names it).
//   - Budget: before every decode, a Serde walks the body (skipping,
//     allocating nothing) within a bound on nesting and on the number of
//     values, whatever the writer schema: arrays in arrays, maps of arrays,
//     wide and recursive records. hamba/avro bounds one string and one
//     array, nothing more, so a 167-byte body could otherwise make it
//     allocate 768 MB. The defaults (depth 128, 100,000 values, 4 values
//     per body byte) suit events; WithBudget changes them per Serde, and
//     Budget.Check serves anything else that decodes untrusted Avro.
//   - Decoding errors (DecodeError, IsPermanent): permanent for the record
//     that caused them, which is what routes it to a dead-letter topic; a
//     body over the budget is ErrTooComplex.
//
// The compatibility checker (the seven Confluent levels) is schemas/compat.
// The framework knows no domain: the demo's schemas and types live in
// examples/events.
package schemas
