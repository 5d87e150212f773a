package compat

import "errors"

// ErrUnknownLevel is returned (wrapped) by ParseLevel for a name that is not
// one of the seven compatibility levels.
var ErrUnknownLevel = errors.New("unknown compatibility level")

// ErrInvalidSchema is returned (wrapped, with hamba's or the JSON decoder's
// reason) by Parse for text that is not a valid Avro schema.
var ErrInvalidSchema = errors.New("invalid Avro schema")
