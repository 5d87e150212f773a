package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/schemas"
)

// Event is what a handler receives: the record's metadata and its payload
// decoded into the generated Go type of its event type (or, for a type
// without one, the generic form: map[string]any).
type Event struct {
	ID               uuid.UUID
	Type             string
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	Topic            string
	Partition        int32
	Offset           int64
	Timestamp        time.Time
	Headers          map[string]string
	Payload          any
}

// HandlerFunc applies one event inside tx, the transaction that also holds
// the event's dedupe row. Returning an error undoes both (the handler's
// statements roll back to a savepoint); wrap it in Permanent to skip retries.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, ev *Event) error

// Outcome of one record in ApplyBatch.
type Outcome int

const (
	Applied   Outcome = iota + 1 // handler ran, effects and dedupe row committed
	Duplicate                    // dedupe row existed: skipped
	Failed                       // decode or handler error: nothing of it committed
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Result is the outcome of one record.
type Result struct {
	Record  *kgo.Record
	Outcome Outcome
	Err     error // for Failed
}

// Applier applies batches of one partition's records idempotently.
type Applier struct {
	group   string
	dedupe  string // quoted table
	serde   *schemas.Serde
	handler HandlerFunc
}

// NewApplier returns an Applier for consumer group group, deduplicating in
// schema's eventline_consumer_dedupe and decoding with serde.
func NewApplier(group, schema string, serde *schemas.Serde, handler HandlerFunc) *Applier {
	if schema == "" {
		schema = migrate.DefaultSchema
	}
	return &Applier{group: group, dedupe: pgx.Identifier{schema, "eventline_consumer_dedupe"}.Sanitize(), serde: serde, handler: handler}
}

// ApplyBatch applies records (one partition's, in offset order) in one
// transaction, so a batch costs one commit. Every event's dedupe row
// (group, event id) is written in the same transaction as its effects; an
// event whose row already exists was applied before and is skipped.
//
// Fast path: all dedupe rows go in with one statement, then the handlers
// run back to back. If any handler fails, that transaction is rolled back
// and the batch is applied again on the slow path: a savepoint per record,
// so the failing record's statements and dedupe row are undone without
// touching the others. An error return means the commit (or the
// connection) failed: nothing of the batch is applied and the caller
// retries it whole.
func (a *Applier) ApplyBatch(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, records []*kgo.Record) ([]Result, error) {
	results := make([]Result, len(records))
	events := make([]*Event, len(records))
	for i, rec := range records {
		results[i] = Result{Record: rec}
		ev, err := a.decode(ctx, rec)
		if err != nil {
			if !IsPermanent(err) {
				return nil, err // registry unreachable: retry the batch
			}
			results[i].Outcome, results[i].Err = Failed, err
			continue
		}
		events[i] = ev
	}
	ok, err := a.fast(ctx, db, events, results)
	if err != nil || ok {
		return results, err
	}
	return results, a.slow(ctx, db, events, results)
}

// fast applies without savepoints; false means a handler failed and the
// transaction was rolled back.
func (a *Applier) fast(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, events []*Event, results []Result) (bool, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("error beginning apply transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ids := make([]uuid.UUID, 0, len(events))
	for _, ev := range events {
		if ev != nil {
			ids = append(ids, ev.ID)
		}
	}
	rows, err := tx.Query(ctx, `INSERT INTO `+a.dedupe+` (group_id, event_id) SELECT $1, id FROM unnest($2::uuid[]) AS id
		ON CONFLICT DO NOTHING RETURNING event_id`, a.group, ids)
	if err != nil {
		return false, fmt.Errorf("error inserting dedupe rows: %w", err)
	}
	fresh, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return false, fmt.Errorf("error inserting dedupe rows: %w", err)
	}
	isNew := make(map[uuid.UUID]bool, len(fresh))
	for _, id := range fresh {
		isNew[id] = true
	}
	for i, ev := range events {
		if ev == nil {
			continue
		}
		if !isNew[ev.ID] {
			results[i].Outcome = Duplicate
			continue
		}
		delete(isNew, ev.ID) // a second copy in the same batch is a duplicate
		if err := a.handle(ctx, tx, ev); err != nil {
			return false, nil
		}
		results[i].Outcome = Applied
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("error committing apply transaction: %w", err)
	}
	return true, nil
}

// slow applies with a savepoint per record.
func (a *Applier) slow(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, events []*Event, results []Result) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("error beginning apply transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for i, ev := range events {
		if ev == nil {
			continue
		}
		outcome, err := a.applyOne(ctx, tx, ev)
		if err != nil && outcome == 0 {
			return err // the transaction itself failed
		}
		results[i].Outcome, results[i].Err = outcome, err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error committing apply transaction: %w", err)
	}
	return nil
}

// applyOne returns outcome 0 with an error when the transaction is broken.
func (a *Applier) applyOne(ctx context.Context, tx pgx.Tx, ev *Event) (Outcome, error) {
	sp, err := tx.Begin(ctx) // SAVEPOINT
	if err != nil {
		return 0, fmt.Errorf("error creating savepoint: %w", err)
	}
	tag, err := sp.Exec(ctx, `INSERT INTO `+a.dedupe+` (group_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, a.group, ev.ID)
	if err != nil {
		_ = sp.Rollback(ctx)
		return 0, fmt.Errorf("error inserting dedupe row: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if err := sp.Commit(ctx); err != nil { // RELEASE SAVEPOINT
			return 0, err
		}
		return Duplicate, nil
	}
	if herr := a.handle(ctx, sp, ev); herr != nil {
		if err := sp.Rollback(ctx); err != nil { // ROLLBACK TO SAVEPOINT
			return 0, fmt.Errorf("error rolling back to savepoint: %w", errors.Join(err, herr))
		}
		return Failed, herr
	}
	if err := sp.Commit(ctx); err != nil {
		return 0, fmt.Errorf("error releasing savepoint: %w", err)
	}
	return Applied, nil
}

// handle runs the handler, turning a panic into a permanent error so one
// bad event cannot take the consumer down.
func (a *Applier) handle(ctx context.Context, tx pgx.Tx, ev *Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	return a.handler(ctx, tx, ev)
}

func (a *Applier) decode(ctx context.Context, rec *kgo.Record) (*Event, error) {
	ev := &Event{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp, Headers: map[string]string{}}
	for _, h := range rec.Headers {
		ev.Headers[h.Key] = string(h.Value)
	}
	id, err := uuid.Parse(ev.Headers["eventline-event-id"])
	if err != nil {
		return nil, Permanent(ErrNoEventID)
	}
	ev.ID = id
	ev.Type = ev.Headers["eventline-event-type"]
	ev.AggregateType = ev.Headers["eventline-aggregate-type"]
	ev.AggregateID = ev.Headers["eventline-aggregate-id"]
	if v := ev.Headers["eventline-aggregate-version"]; v != "" {
		ev.AggregateVersion, _ = strconv.ParseInt(v, 10, 64)
	}
	if typed, ok := schemas.New(ev.Type); ok {
		if err := a.serde.Decode(ctx, rec.Value, typed); err != nil {
			return nil, err
		}
		ev.Payload = typed
		return ev, nil
	}
	generic, _, err := a.serde.DecodeGeneric(ctx, rec.Value)
	if err != nil {
		return nil, err
	}
	ev.Payload = generic
	return ev, nil
}
