package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/schemas"
)

// outcome of one record in ApplyBatch; the hook's type, so that the
// benchmark and test helpers read it as it is.
type outcome = hook.Outcome

const (
	outApplied   = hook.Applied
	outDuplicate = hook.Duplicate
	outFailed    = hook.Failed
	outDeferred  = hook.Deferred
	outSkipped   = hook.Skipped // the Mux has no handler for its type: nothing written (see Mux)
)

// result is the outcome of one record.
type result struct {
	Record  *kgo.Record
	Outcome outcome
	Err     error // when failed

	env    envelope
	due    time.Time // a failed or deferred record's next copy, when the applier chose it (key order)
	evType string    // a decoded record's event type
	evID   uuid.UUID // and its dedupe key
}

// beginner is what ApplyBatch needs of a database: *pgxpool.Pool, *pgx.Conn.
type beginner interface {
	Begin(context.Context) (pgx.Tx, error)
}

// applier applies batches idempotently: one partition's records, or a
// poll's few records of one topic (Group.coalesce).
type applier struct {
	group   string
	dedupe  string // quoted tables
	chain   string
	serde   *schemas.Serde
	handler HandlerFunc
	batch   BatchHandlerFunc
	// keyOrder: consult and maintain eventline_consumer_chain.
	keyOrder bool
	tracer   trace.Tracer // nil: no process spans
	types    typeSet
	idFunc   EventIDFunc // nil: DefaultEventID
	mux      *Mux        // nil: no event is skipped
}

// applierFor returns the applier of a group configured by cfg (defaults
// applied, validated).
func applierFor(cfg Config) *applier {
	handler, events := cfg.Handler, cfg.Events
	if cfg.Mux != nil {
		handler, events = cfg.Mux.handler(), cfg.Mux.events
	}
	a := newApplier(cfg.Group, cfg.Schema, cfg.Serde, handler).WithKeyOrder(cfg.KeyOrder).WithEvents(events...).WithEventID(cfg.EventID)
	if cfg.BatchHandler != nil {
		a.WithBatchHandler(cfg.BatchHandler)
	}
	a.mux = cfg.Mux
	return a.WithTracing(cfg.TracerProvider)
}

// skips: ev is of a type the Mux has no handler for (see Mux).
func (a *applier) skips(ev *Event) bool { return a.mux != nil && a.mux.skips(ev.handlerType()) }

// newApplier returns an applier for consumer group group, deduplicating in
// schema's eventline_consumer_dedupe and decoding with serde.
func newApplier(group, schema string, serde *schemas.Serde, handler HandlerFunc) *applier {
	if schema == "" {
		schema = migrate.DefaultSchema
	}
	return &applier{
		group:   group,
		dedupe:  pgx.Identifier{schema, "eventline_consumer_dedupe"}.Sanitize(),
		chain:   pgx.Identifier{schema, "eventline_consumer_chain"}.Sanitize(),
		serde:   serde,
		handler: handler,
	}
}

// WithBatchHandler makes the fast path call h once per batch instead of
// the per-event handler; the per-event handler (or h with one event, when
// there is none) isolates failures.
func (a *applier) WithBatchHandler(h BatchHandlerFunc) *applier {
	a.batch = h
	if a.handler == nil {
		a.handler = func(ctx context.Context, tx pgx.Tx, ev *Event) error { return h(ctx, tx, []*Event{ev}) }
	}
	return a
}

// WithTracing gives every handler call a "<topic> process" span, child of
// the record's trace context (its receive span when the consumer runs
// franz-go's kotel hooks, else its traceparent header). Without it the
// handler's context still carries the record's trace context, so events
// the handler appends continue the trace.
func (a *applier) WithTracing(tp trace.TracerProvider) *applier {
	if tp != nil {
		a.tracer = tp.Tracer("github.com/eventline/eventline/consumers")
	}
	return a
}

// WithEvents makes payloads of these types' event types decode into them
// (zero values of generated types, e.g. &payments.PaymentCaptured{});
// other types decode into the generic form. It panics on a value that is
// not a pointer or on two Go types for one event type; Group's New
// returns that as an error instead.
func (a *applier) WithEvents(evs ...schemas.Event) *applier {
	ts, err := newTypeSet(evs)
	if err != nil {
		panic(err)
	}
	a.types = ts
	return a
}

// WithEventID sets how records without an eventline-event-id header get
// their dedupe key (see EventIDFunc); nil means DefaultEventID.
func (a *applier) WithEventID(f EventIDFunc) *applier { a.idFunc = f; return a }

// WithKeyOrder turns on key-order-preserving retries (see Group).
func (a *applier) WithKeyOrder(on bool) *applier { a.keyOrder = on; return a }

// ApplyBatch applies records (one partition's, in offset order) in one
// transaction, so a batch costs one commit. Every event's dedupe row
// (group, event id) is written in the same transaction as its effects; an
// event whose row already exists was applied before and is skipped.
//
// Fast path: all dedupe rows go in with one statement, then the handlers
// run back to back (or the batch handler once). If any handler fails, that
// transaction is rolled back and the batch is applied again on the slow
// path: a savepoint per record, so the failing record's statements and
// dedupe row are undone without touching the others. An error return
// means the commit (or the connection, or the registry) failed: nothing of
// the batch is applied and the caller retries it whole.
//
// With key order on, records whose key has an earlier event in the retry
// chain come back deferred (and enter the chain in the same transaction),
// and a record that fails with a retriable error enters the chain too.
func (a *applier) ApplyBatch(ctx context.Context, db beginner, records []*kgo.Record) ([]result, error) {
	return a.apply(ctx, db, itemsOf(records, a.group), step{}, nil)
}

// slowChunk: after the fast path failed, a batch is applied again in
// transactions of at most this many records, each fast if it can be, so
// one failure does not hold the whole batch's row locks through the slow
// path; yield runs between them (the runtime lets a due retry batch of
// the same partition in).
const slowChunk = 64

// apply is ApplyBatch at step st: st.last says a retriable failure goes to
// the DLT (the record is on the last retry step), which takes it out of the
// chain; st.next dates the copies of failed and deferred records.
func (a *applier) apply(ctx context.Context, db beginner, items []item, st step, yield func()) ([]result, error) {
	results := make([]result, len(items))
	events := make([]*Event, len(items))
	for i, it := range items {
		results[i] = result{Record: it.rec, env: it.env}
		ev, err := a.decode(ctx, it)
		if err != nil {
			if !IsPermanent(err) {
				return nil, err // registry unreachable: retry the batch
			}
			results[i].Outcome, results[i].Err = outFailed, err
			continue
		}
		results[i].evType, results[i].evID = ev.Type, ev.ID
		if a.skips(ev) {
			// No handler, no effects, no dedupe row: from here on it is
			// handled like an undecodable record (no event), but kept.
			results[i].Outcome = outSkipped
			continue
		}
		events[i] = ev
	}
	failed, ferr, err := a.fast(ctx, db, items, events, results, st)
	if err != nil || failed == nil {
		return results, err
	}
	for i := range results { // the fast path's verdicts were rolled back
		if events[i] != nil {
			results[i].Outcome, results[i].Err = 0, nil
		}
	}
	if len(items) <= slowChunk {
		return results, a.slow(ctx, db, items, events, results, st, failed, ferr)
	}
	for lo := 0; lo < len(items); lo += slowChunk {
		hi := min(lo+slowChunk, len(items))
		its, evs, res := items[lo:hi], events[lo:hi], results[lo:hi]
		if yield != nil && lo > 0 {
			yield()
		}
		if slices.Contains(evs, failed) { // its handler already failed for this attempt
			if err := a.slow(ctx, db, its, evs, res, st, failed, ferr); err != nil {
				return results, err
			}
			continue
		}
		f, fe, err := a.fast(ctx, db, its, evs, res, st)
		if err != nil {
			return results, err
		}
		if f == nil {
			continue
		}
		for i := range res {
			if evs[i] != nil {
				res[i].Outcome, res[i].Err = 0, nil
			}
		}
		if err := a.slow(ctx, db, its, evs, res, st, f, fe); err != nil {
			return results, err
		}
	}
	return results, nil
}

// fast applies without savepoints. A non-nil failed means a handler failed
// and the transaction was rolled back: failed is the event whose handler
// failed with ferr (nil for a failed batch handler, which does not say).
func (a *applier) fast(ctx context.Context, db beginner, items []item, events []*Event, results []result, st step) (failed *Event, ferr error, err error) {
	rolledBack := &Event{}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("error beginning apply transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	chain, err := a.loadChain(ctx, tx, items)
	if err != nil {
		return nil, nil, err
	}
	var enter []entry
	var leave []item
	now := time.Now()
	skip := make([]bool, len(events))       // deferred
	ids := make([][16]byte, 0, len(events)) // see insertDedupe
	for i, ev := range events {
		if !a.keyOrder {
			if ev != nil {
				ids = append(ids, ev.ID)
			}
			continue
		}
		blocked, own, after := chain.check(items[i])
		isSource := items[i].env.isSource()
		switch {
		case ev == nil: // undecodable (to the DLT) or skipped (no effects to order): out of the chain
			if own {
				leave = append(leave, items[i])
				chain.remove(items[i])
			}
		case blocked || (own && isSource):
			// Follows its key's earlier event (or, re-read after a crash,
			// had already entered the chain).
			results[i].Outcome = outDeferred
			skip[i] = true
			row, due := st.deferDue(now, after)
			results[i].due = due
			enter = append(enter, entry{items[i], row})
			chain.set(items[i], row)
		default: // applied or a duplicate: either way it leaves the chain
			if own {
				leave = append(leave, items[i])
				chain.remove(items[i])
			}
			ids = append(ids, ev.ID)
		}
	}
	isNew, err := a.insertDedupe(ctx, tx, ids)
	if err != nil {
		return nil, nil, err
	}
	todo := make([]*Event, 0, len(isNew))
	for i, ev := range events {
		if ev == nil || skip[i] {
			continue
		}
		if !isNew[ev.ID] {
			results[i].Outcome = outDuplicate
			continue
		}
		delete(isNew, ev.ID) // a second copy in the same batch is a duplicate
		results[i].Outcome = outApplied
		todo = append(todo, ev)
	}
	if a.batch != nil && len(todo) > 0 {
		if err := a.handleBatch(ctx, tx, todo); err != nil {
			if isConflict(err) || tx.Conn().IsClosed() {
				return nil, nil, err
			}
			return rolledBack, nil, nil
		}
	} else {
		for _, ev := range todo {
			if err := a.handle(ctx, tx, ev); err != nil {
				if isConflict(err) || tx.Conn().IsClosed() {
					return nil, nil, err // retry the whole batch, not this event
				}
				return ev, err, nil
			}
		}
	}
	if err := a.enterChain(ctx, tx, enter); err != nil {
		return nil, nil, err
	}
	if err := a.leaveChain(ctx, tx, leave); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("error committing apply transaction: %w", err)
	}
	return nil, nil, nil
}

// isConflict: a deadlock or serialization failure between concurrent apply
// transactions (several partitions in flight lock the same rows). It says
// nothing about the event, so the batch is retried whole instead of the
// event going to the retry chain; so is a handler error on a connection
// that has closed (the database went away).
func isConflict(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40P01" || pg.Code == "40001")
}

// handle runs the handler, turning a panic into a permanent error so one
// bad event cannot take the consumer down.
func (a *applier) handle(ctx context.Context, tx pgx.Tx, ev *Event) (err error) {
	ctx = recordTrace(ctx, ev.rec)
	if a.tracer != nil {
		var span trace.Span
		ctx, span = a.tracer.Start(ctx, ev.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", ev.Topic),
			attribute.Int("messaging.destination.partition.id", int(ev.Partition)),
			attribute.Int64("messaging.kafka.offset", ev.Offset),
			attribute.String("messaging.consumer.group.name", a.group),
			attribute.String("eventline.event_id", ev.ID.String()),
			attribute.String("eventline.event_type", ev.Type),
			attribute.Int("eventline.attempt", ev.Attempt)))
		if ev.rec != nil {
			ev.rec.Context = ctx // a retry or DLT copy's publish span hangs off this one
		}
		defer func() { endSpan(span, err) }()
	}
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	return a.handler(ctx, tx, ev)
}

// endSpan ends span, marked failed with err unless err is nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// recordTrace returns ctx carrying rec's trace context: its kotel receive
// span, or the one in its traceparent header.
func recordTrace(ctx context.Context, rec *kgo.Record) context.Context {
	if rec == nil {
		return ctx
	}
	if rec.Context != nil {
		if span := trace.SpanFromContext(rec.Context); span.SpanContext().IsValid() {
			return trace.ContextWithSpan(ctx, span)
		}
	}
	if _, ok := header(rec, "traceparent"); !ok {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, kotel.NewRecordCarrier(rec))
}

func (a *applier) handleBatch(ctx context.Context, tx pgx.Tx, evs []*Event) (err error) {
	if a.tracer != nil {
		links := make([]trace.Link, 0, min(len(evs), 128))
		for _, ev := range evs[:min(len(evs), 128)] {
			if sc := trace.SpanContextFromContext(recordTrace(context.Background(), ev.rec)); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
		var span trace.Span
		ctx, span = a.tracer.Start(ctx, evs[0].Topic+" process batch", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
			trace.WithAttributes(attribute.String("messaging.consumer.group.name", a.group), attribute.Int("messaging.batch.message_count", len(evs))))
		defer func() { endSpan(span, err) }()
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("batch handler panic: %v", r) // isolated per event on the slow path
		}
	}()
	return a.batch(ctx, tx, evs)
}
