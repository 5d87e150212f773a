package schemas

import (
	"errors"
	"fmt"
)

// Decoding errors. Every one of them is permanent for the record that caused
// it (retrying cannot change the bytes or the registry's answer for an id),
// which is what routes a record straight to the dead-letter topic; see
// IsPermanent. A registry that cannot be reached is not one of them.
var (
	// ErrShortBuffer: fewer than the 5 bytes of the Confluent header.
	ErrShortBuffer = errors.New("record value shorter than the 5-byte Confluent header")
	// ErrBadMagic: the first byte is not the Confluent magic byte 0.
	ErrBadMagic = errors.New("record value does not start with the Confluent magic byte 0")
	// ErrUnknownSchemaID: the registry has no schema with the record's id.
	ErrUnknownSchemaID = errors.New("unknown schema id")
	// ErrUnresolvable: the writer schema cannot be read as the reader's
	// schema under Avro's resolution rules.
	ErrUnresolvable = errors.New("writer schema cannot be resolved to the reader schema")
	// ErrBadBody: the Avro body does not decode with the writer schema (or
	// has bytes left over).
	ErrBadBody = errors.New("avro body does not match its writer schema")
	// ErrUnsupportedSchema: the id names a schema that is not Avro, or that
	// does not parse.
	ErrUnsupportedSchema = errors.New("schema of the record is not a usable Avro schema")
)

// DecodeError wraps a decoding failure with the schema id involved (0 when
// the header itself is broken).
type DecodeError struct {
	ID  int
	Err error // one of the sentinels above, possibly wrapping the cause
}

func (e *DecodeError) Error() string {
	if e.ID == 0 {
		return "decode: " + e.Err.Error()
	}
	return fmt.Sprintf("decode (schema id %d): %s", e.ID, e.Err.Error())
}

func (e *DecodeError) Unwrap() error { return e.Err }

// IsDecodeError reports whether err is a DecodeError: a value that cannot
// be decoded, which retrying cannot fix (consumers.IsPermanent counts it
// as permanent).
func IsDecodeError(err error) bool {
	var de *DecodeError
	return errors.As(err, &de)
}

// Catalogue errors, returned by LoadCatalog and Catalog.Of (and so by
// producer.New).
var (
	// ErrNotInCatalog: an event type has no .avsc file in the catalogue.
	ErrNotInCatalog = errors.New("event type not in the schema catalogue")
	// ErrStaleType: a generated Go type's schema differs from its .avsc
	// file (the code was not regenerated after the file changed).
	ErrStaleType = errors.New("generated type does not match its schema file")
	// ErrEmptyCatalog: LoadCatalog found no .avsc file in the directory
	// (a wrong schemas.dir, or files not embedded).
	ErrEmptyCatalog = errors.New("empty schema catalogue")
	// ErrBadReference: a schema file uses a named type no file of the
	// catalogue defines, or files use each other in a cycle.
	ErrBadReference = errors.New("bad schema reference")
)
