// Package consumers runs Kafka consumer groups whose handlers apply each
// event exactly once in PostgreSQL, and routes failures through delay
// retry topics to a dead-letter topic.
//
// Exactly-once effects: a batch of one partition's records (or, when a
// poll brings only a few, of several partitions of one topic) is applied
// in one transaction that holds both the handlers' effects and a dedupe
// row (group, event id) per event; an event whose row exists is skipped.
// Offsets are marked only after that transaction commits (and after any
// retry or DLT copy is acknowledged), so a crash at any point redelivers
// and the dedupe rows absorb the repeat. While records flow, a small poll
// waits Config.Linger (2 ms) for more, so that several share a
// transaction.
//
// Event.ID is a uuid.UUID, which pgx sends through its text Valuer (a
// failed binary encode and a parse per parameter); a handler that writes
// it pays less as [16]byte(ev.ID), which pgx sends as a uuid directly.
//
// Handlers receive an Event: its payload decoded into the team's generated
// Go type (typed handlers on a Mux with Handle, or Config.Events), read
// with that type's schema whatever version the writer used, plus the raw
// record (Event.Record: key, headers, offset, timestamp). Records of any
// Confluent-Avro producer are accepted, not only eventline's relay: the
// event type is the writer schema's full name and the dedupe key, without
// an eventline-event-id header, is DefaultEventID (the record's source
// topic/partition/offset) or Config.EventID's answer.
//
//	mux := consumers.NewMux()
//	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, p *payments.PaymentCaptured) error {
//		_, err := tx.Exec(ctx, `INSERT INTO ledger (payment_id, amount) VALUES ($1, $2)`, p.PaymentID, p.AmountMinor)
//		return err
//	})
//	g, err := consumers.New(consumers.Config{
//		Group: "ledger", Topics: []string{"payments.events"}, Brokers: brokers, DB: pool,
//		Serde: schemas.NewSerde(registryClient), Mux: mux, Pipeline: pipe, CreateTopics: true,
//	})
//	err = g.Run(ctx) // until ctx ends
//
// Failures: a handler error sends the event to <topic>.<group>.retry.1
// (then .retry.2 …, each with its delay), and after the last step to
// <topic>.<group>.dlt; Permanent(err), a panic or an undecodable record go
// to the DLT at once. So does a value over the Serde's decode budget
// (schemas.Budget), checked before anything is allocated for it: a few
// hostile bytes cannot exhaust the group's memory. With KeyOrder, later
// events of a key whose event is in the chain follow it there. Package
// deadletter (and `eventline dlt`) lists, scans and replays dead letters;
// this package names their topics (RetryTopic, DLTTopic, ParseDLTTopic),
// headers and error classes. See docs/architecture.md.
package consumers
