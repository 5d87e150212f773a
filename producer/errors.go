package producer

import (
	"errors"

	"github.com/eventline/eventline/migrate"
)

// Errors returned by Append. All of them mean nothing was written: Append
// validates and encodes every event before it touches the transaction.
var (
	// ErrInvalidEvent: the envelope is incomplete (no aggregate type or
	// id, no payload) or the payload does not encode with its schema.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrUnknownEventType: the payload's type was not resolved at startup
	// (not among the Config.Events given to New).
	ErrUnknownEventType = errors.New("unknown event type")
)

// Errors returned by New.
var (
	// ErrNotRegistered: with AutoRegister off, a schema is missing from
	// the registry under its subject.
	ErrNotRegistered = errors.New("schema not registered")
	// ErrNotRouted: an event type of Config.Events is carried by no topic
	// of the pipeline file. (schemas.ErrNotInCatalog and
	// schemas.ErrStaleType report a type without a matching .avsc file.)
	ErrNotRouted = errors.New("event type not routed")
)

// ErrNotMigrated is returned by New when the outbox is not in Config.DB
// under Config.Schema (the migrations have not run there). It is
// migrate.ErrNotMigrated.
var ErrNotMigrated = migrate.ErrNotMigrated
