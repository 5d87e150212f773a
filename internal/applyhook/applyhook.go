// Package applyhook lets package eventlinetest run the consumer runtime's
// apply path on one record inside a test's transaction, without package
// consumers exporting that path. Package consumers sets Apply when it is
// initialised, so any importer of eventlinetest (which imports consumers)
// finds it set.
package applyhook

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Result is what became of the record.
type Result struct {
	// Outcome is "applied", "duplicate", "skipped" or "failed".
	Outcome string
	// EventID and EventType are the decoded event's (zero when it could
	// not be decoded).
	EventID   uuid.UUID
	EventType string
	// Failure is why a "failed" record failed: the handler's error, or its
	// decoding's.
	Failure error
}

// Apply applies rec as a group configured by cfg (a consumers.Config)
// would, in a savepoint of tx: the handler's effects and the event's
// dedupe row, or neither. The error is a configuration, registry or
// database error: nothing was applied.
var Apply func(ctx context.Context, tx pgx.Tx, cfg any, rec *kgo.Record) (Result, error)
