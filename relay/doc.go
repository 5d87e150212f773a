// Package relay drains the transactional outbox into Kafka.
//
// One relay per outbox is active at a time: the leader holds a session-level
// PostgreSQL advisory lock on a dedicated connection; standbys retry the lock
// and take over within StandbyRetry of the leader's connection dying. The
// leader learns of new rows by probing the outbox's primary key:
// every millisecond while rows arrive, backing off to ProbeInterval when
// idle, plus a full drain every PollInterval. Writers pay nothing for it:
// no trigger or NOTIFY runs in their transactions.
//
// A batch is read in id order, starting above a floor of ids that no
// running transaction can still commit a row at (proven from snapshots:
// the outbox's id default takes the transaction's xid first), produced
// with franz-go's idempotent producer (key = aggregate id, so one
// aggregate stays on one partition and in order), every ack is awaited, and only then are the rows deleted (or
// marked published in retention mode) in one statement. A crash at any point
// therefore re-publishes rather than loses: duplicates are possible and
// consumers dedupe by event id; loss is not.
//
// With Config.Transactional, each batch is one Kafka transaction holding
// its records and the relay's position, on the outbox's position topic:
// in poll mode the batch's outbox ids, in logical mode how far the stream
// is (the end of the last whole PostgreSQL transaction, and how many events
// of a transaction split across batches). A new leader fences earlier
// producers of the outbox's transactional.id, then deletes the rows of the
// last committed batch (poll) or starts the slot where the last committed
// transaction ends (logical). A consumer reading committed then sees every
// event once, across crashes and takeovers.
//
// Transient failures (broker down, leader moves) are retried by the Kafka
// client forever, and database failures that can heal by the relay with
// capped backoff. Errors that waiting cannot heal (wrong credentials, no
// such database, the outbox table missing, no privilege on it, SASL
// refused) end Run with the error instead. Permanent failures of one row
// (record too large, topic invalid) park the row in eventline_outbox_parked
// with the error, and the relay moves on.
//
// That is poll mode (ModePoll, producers in producer.ModePoll). In logical
// mode (ModeLogical, producers in producer.ModeLogical) events are logical
// decoding messages in the WAL, not rows: the leader streams them from a
// replication slot (jackc/pglogrepl), in commit order, and confirms to
// PostgreSQL only the end of transactions whose events Kafka acknowledged,
// with all before them. The slot ending invalidated or gone ends
// Run with ErrSlotInvalidated or ErrSlotLost (docs/operations.md).
//
// The relay publishes only what the pipeline allows (Config.Pipeline): an
// event whose topic is not one of eventline.yaml's, whose type is not
// routed to its topic, whose value is not Confluent-framed or which carries
// a header reserved for eventline is parked with ErrNotAllowed and the
// reason, in both modes. Whoever can write an event therefore reaches only
// the pipeline's topics; in logical mode, who can write one at all is
// restricted by migrate.LogicalOptions.Emitters (ErrPublicEmit otherwise).
//
// A topic with a cloudevents block in eventline.yaml (pipeline.CloudEvents)
// is written in CloudEvents binary content mode, in both modes: beside the
// eventline-* headers, the Kafka binding's ce_specversion, ce_id (the event
// id), ce_source, ce_type (the Avro full name), ce_time (when the event was
// written: the row's created_at in poll mode, the commit time in logical
// mode), ce_subject (the aggregate id) and content-type application/avro,
// with the same key and Confluent-framed value. On such a topic a stored
// header may add an extension attribute (ce_ and lower-case letters and
// digits) but not set one the relay writes, nor content-type: the event is
// parked (ErrNotAllowed).
//
// Run runs once (ErrAlreadyRunning after); after its context ends it waits
// at most ShutdownTimeout for the in-flight batch's acks.
//
// docs/architecture.md walks through the code, file by file.
package relay
