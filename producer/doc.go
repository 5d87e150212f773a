// Package producer appends Avro-encoded events to the transactional outbox
// (eventline_outbox) inside the caller's pgx transaction, so an event is
// stored exactly when the business write commits, and not at all when it
// rolls back.
//
// A service builds one Producer at startup from its own pipeline file,
// schema catalogue and generated types:
//
//	pipe, _ := pipeline.Load("eventline.yaml")
//	cat, _ := schemas.LoadCatalogDir(pipe.SchemaDir())
//	prod, err := producer.New(ctx, producer.Config{
//		DB: db, Pipeline: pipe, Registry: registryClient, Catalog: cat,
//		Events: []schemas.Event{&payments.PaymentCaptured{}, &payments.RefundIssued{}},
//	})
//
// New checks that the outbox is in db (the migrations ran under Schema) and
// that the role may write events, checks every type against its .avsc file
// and the pipeline's routing, then resolves each schema's registry id once (a lookup of the file's
// exact text; with AutoRegister, a registration at the subject's level from
// the pipeline file), so a registry outage later never blocks a business
// write. Append then validates and encodes in memory, and writes all rows
// in one statement:
//
//	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, `UPDATE payments SET status = 'captured' WHERE id = $1`, id); err != nil {
//			return err
//		}
//		return prod.Append(ctx, tx, producer.Message{AggregateType: "payment", AggregateID: id,
//			Event: &payments.PaymentCaptured{PaymentID: id, AmountMinor: 1250}})
//	})
//
// Any error from Append means nothing was written to tx. A
// transaction-scoped advisory lock per aggregate makes outbox ids follow
// commit order within an aggregate (the relay's per-aggregate order
// guarantee rests on it). The trace context of ctx is stored with the row,
// so the relay's publish span and the consumer's process span continue the
// caller's trace.
//
// Config.Mode = ModeLogical writes each event as a transactional logical
// decoding message instead of a row (no advisory lock: the WAL gives commit
// order), for a relay in logical mode; it needs wal_level=logical and the
// slot made by `eventline migrate --mode logical` (ErrNotDecodable;
// docs/operations.md).
package producer
