package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"

	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

// setupLogical is setup with the producer in message mode and the slot made.
func setupLogical(t *testing.T) *bundle {
	t.Helper()
	f := testkit.Setup(t, testkit.Mode(producer.ModeMessage))
	topic := testkit.UniqueName(t, "orders")
	prod := f.Producer(t, fmt.Appendf(nil, "topics: [{name: %s, partitions: 4, events: [eventline.orders.OrderCreated, eventline.orders.OrderConfirmed]}]", topic),
		events.Catalog(), &events.OrderCreated{}, &events.OrderConfirmed{})
	return &bundle{t: t, dbURL: f.DatabaseURL, db: f.DB, brokers: testkit.Kafka(t), topic: topic, prod: prod}
}

func (b *bundle) slot() (confirmed pglogrepl.LSN, active bool) {
	b.t.Helper()
	var lsn string
	if err := b.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE database = current_database()`).Scan(&lsn, &active); err != nil {
		b.t.Fatal(err)
	}
	l, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		b.t.Fatal(err)
	}
	return l, active
}

func (b *bundle) walNow() pglogrepl.LSN {
	b.t.Helper()
	var lsn string
	if err := b.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		b.t.Fatal(err)
	}
	l, _ := pglogrepl.ParseLSN(lsn)
	return l
}

// Events appended before the relay starts (a backlog in the slot) and
// while it runs arrive once each, in order; a clean stop confirms them all,
// so a restarted relay publishes nothing twice.
func TestLogicalPublishesInOrder(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b.appendOrders(aggs, 4)
	if n := b.outboxCount(); n != 0 {
		t.Fatalf("message mode wrote %d outbox rows", n)
	}
	r, stop := b.start(relay.Config{Mode: relay.ModeLogical})
	waitFor(t, func() bool { return r.Stats().Published == 20 })
	recs := b.consume(20)
	if dups := checkOrder(t, recs); dups != 0 {
		t.Errorf("%d duplicates without any failure", dups)
	}
	rec := recs[0]
	if header(rec, "eventline-event-type") != "eventline.orders.OrderCreated" || header(rec, "eventline-aggregate-id") != string(rec.Key) || header(rec, "eventline-event-id") == "" {
		t.Errorf("headers: %v", rec.Headers)
	}
	stop()
	end := b.walNow()
	if confirmed, active := b.slot(); active || confirmed == 0 {
		t.Fatalf("after a clean stop: slot active %v, confirmed %s", active, confirmed)
	}
	// The clean stop confirmed every event: a new relay sends only new ones.
	b.appendVersion(aggs[0], 5)
	r2, _ := b.start(relay.Config{Mode: relay.ModeLogical})
	waitFor(t, func() bool { return r2.Stats().Published >= 1 })
	recs = b.consume(21)
	if dups := checkOrder(t, recs); dups != 0 || len(recs) != 21 {
		t.Errorf("after a restart: %d records, %d duplicates", len(recs), dups)
	}
	if r2.Stats().Published != 1 {
		t.Errorf("restarted relay published %d events, want 1", r2.Stats().Published)
	}
	_ = end
}

// An event Kafka refuses for good is parked under minus its WAL position;
// the stream goes on; Requeue writes it again as a message.
func TestLogicalParksTooLargeEvents(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	agg := uuid.NewString()
	// 2 MiB: more than the topic's max.message.bytes (what the producer
	// lets through is bounded by the schema's limits, not Kafka's).
	big, err := outboxmsg.Encode(&outboxmsg.Event{Topic: b.topic, Key: []byte(agg), Value: make([]byte, 2<<20), EventID: uuid.New(),
		EventType: "eventline.orders.OrderCreated", AggregateType: "order", AggregateID: agg, Headers: []byte("[]")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, $2::bytea)`, outboxmsg.Prefix("public"), big); err != nil {
		t.Fatal(err)
	}
	b.appendOrders([]string{agg}, 2)
	r, cancel := b.start(relay.Config{Mode: relay.ModeLogical})
	checkOrder(t, b.consume(2))
	waitFor(t, func() bool { return r.Stats().Parked == 1 })
	cancel()
	parked, err := relay.ListParked(ctx, b.db, "")
	if err != nil || len(parked) != 1 || parked[0].ID >= 0 || !strings.Contains(parked[0].Error, "MESSAGE_TOO_LARGE") {
		t.Fatalf("parked: %+v, %v", parked, err)
	}
	ok, err := relay.Requeue(ctx, b.db, "", parked[0].ID)
	if err != nil || !ok {
		t.Fatalf("requeue: %v %v", ok, err)
	}
	if left, _ := relay.ListParked(ctx, b.db, ""); len(left) != 0 {
		t.Fatalf("still parked after requeue: %+v", left)
	}
	// The requeued message is read again (and parked again: still too large).
	r2, _ := b.start(relay.Config{Mode: relay.ModeLogical})
	waitFor(t, func() bool { return r2.Stats().Parked == 1 })
}

// appendVersion appends one event of agg at version v.
func (b *bundle) appendVersion(agg string, v int64) {
	b.t.Helper()
	ctx := context.Background()
	tx, err := b.db.Begin(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "order", AggregateID: agg, AggregateVersion: v, Event: order(agg)}); err != nil {
		b.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.t.Fatal(err)
	}
}

func init() { _ = time.Second }
