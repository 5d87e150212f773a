// Package hook holds the function variables through which the module's own
// packages reach what a public package does not export: the dead-letter
// tooling's replay copy, the benchmark's ceilings (the relay's queries and
// decoding without Kafka, a group's applied batches) and the consumers'
// apply path for test helpers. Each is set by the package that implements it, in
// its init, so it is non-nil in any program that imports that package; a
// receiver is passed as any because this package cannot import its owner.
package hook

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReplayCopy, set by package consumers, builds the copy of rec (a record of
// group's dead-letter topic whose bookkeeping headers the group wrote) that
// goes to topic as attempt 1 with replay count replays, due at due,
// keeping its key, value, partition and event headers: the copy the
// runtime itself would send to a retry topic.
var ReplayCopy func(rec *kgo.Record, topic, group, class, message string, replays int, due time.Time) *kgo.Record

// RelayDrain, set by package relay, empties the outbox of r (a
// *relay.Relay) with exactly the relay's queries, batch size and per-row
// work but no Kafka: the SQL-only ceiling `eventline bench relay` compares
// the relay with. It returns the rows drained.
var RelayDrain func(ctx context.Context, r any) (int, error)

// RelayDecode, set by package relay, streams slot (a pgoutput slot of r's
// database, beside the relay's own) with r's logical-mode path (session,
// parsing, decoding, record building, confirmation) but hands no record to
// Kafka: the decode-only ceiling of `eventline bench relay --mode logical`.
// It returns the events decoded once at least want (positive) were, at the
// end of the want-th's transaction, after confirming that position.
var RelayDecode func(ctx context.Context, r any, slot string, want int) (int, error)

// Outcome of one record of a batch a consumer group applied.
type Outcome int

// The outcomes.
const (
	Applied   Outcome = iota + 1 // handler ran, effects and dedupe row committed
	Duplicate                    // dedupe row existed: skipped
	Failed                       // decode or handler error: nothing of it committed
	Deferred                     // an earlier event of its key is in the retry chain: it follows
	Skipped                      // a Mux has no handler for its type: nothing written
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Failed:
		return "failed"
	case Deferred:
		return "deferred"
	case Skipped:
		return "skipped"
	}
	return "unknown"
}

// Result is what applying a batch did to one of its records.
type Result struct {
	Record  *kgo.Record
	Outcome Outcome
	Err     error // when Failed
}

// AfterApply, set by package consumers, makes g (a *consumers.Group, before
// its Run) call f after each batch's transaction commits and its retry and
// DLT copies are acknowledged, before its offsets are marked: how the
// benchmark times a group and the crash test kills one mid-stream.
var AfterApply func(g any, f func([]Result))

// ApplyResult is what ApplyRecord did with its record.
type ApplyResult struct {
	Outcome Outcome
	// EventID and EventType are the decoded event's (zero when it could
	// not be decoded).
	EventID   uuid.UUID
	EventType string
	// Failure is why a Failed record failed: the handler's error, or its
	// decoding's.
	Failure error
}

// ApplyRecord, set by package consumers, applies rec as a group configured
// by cfg (a consumers.Config) would, in a savepoint of tx: the handler's
// effects and the event's dedupe row, or neither. The error is a
// configuration, registry or database error: nothing was applied. It is
// how eventlinetest runs a team's handlers without Kafka.
var ApplyRecord func(ctx context.Context, tx pgx.Tx, cfg any, rec *kgo.Record) (ApplyResult, error)
