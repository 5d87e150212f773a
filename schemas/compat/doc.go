// Package compat decides whether one Avro schema can read data written with
// another, with the verdicts of Apache Avro Java's
// SchemaCompatibility.checkReaderWriterCompatibility, and applies that check
// at the levels a schema registry offers (BACKWARD, FORWARD, FULL, their
// _TRANSITIVE forms, NONE) with Confluent's meaning.
//
// Unlike Avro Java it explains itself: every incompatibility is reported, not
// only the first, each with Java's location in the reader schema (Location),
// the same path with field names instead of positions (Path), what is wrong
// (Message) and how to fix it (Hint).
//
// Java is the reference, not the Avro specification as we read it: where the
// two differ, this package follows Java, and says so next to the rule. The
// differential test (TestDifferentialAgainstApacheAvro) runs Avro Java over a corpus of a
// few hundred reader/writer pairs and fails on any verdict that differs. The
// rules it holds us to:
//
//   - Promotions: int reads as long, float or double; long as float or
//     double; float as double; string and bytes read as each other. Logical
//     types are ignored: only the underlying type counts.
//   - Named types (record, enum, fixed) match when their unqualified names are
//     equal, or when one of the reader's aliases equals the writer's full name.
//     Namespaces alone never make two types incompatible.
//   - A reader field is filled from the writer field with its name or one of
//     its aliases; one that the writer lacks needs a default. A reader field's
//     name and aliases matching two writer fields makes Java throw rather than
//     answer; we report AmbiguousField.
//   - Enums: every writer symbol must be a reader symbol, unless the reader
//     enum has a default symbol. Fixed: equal size.
//   - Arrays and maps compare their items and values.
//   - Unions: each branch of a writer union must be readable by the reader; a
//     reader union reads a non-union writer when any branch does.
//   - Recursive types: a reader/writer pair met again while still being
//     checked is taken as compatible, and every pair's verdict is remembered
//     for the rest of the check, as Java does; this is what makes verdicts on
//     recursive schemas agree with Java's even in its corner cases.
//
// Schemas are hamba/avro values. Parse them with Parse, which gives every
// schema a cache of its own: two versions of one schema define the same named
// types, and hamba's shared default cache would resolve the second version's
// references to the first's definitions.
package compat
