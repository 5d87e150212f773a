package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// setupLogical is setup with the producer in logical mode and the slot made.
func setupLogical(t *testing.T) *bundle {
	t.Helper()
	f := testkit.Setup(t, testkit.Mode(producer.ModeLogical))
	topic := testkit.UniqueName(t, "tickets")
	prod := f.Producer(t, fmt.Appendf(nil, "topics: [{name: %s, partitions: 4, events: [helpdesk.tickets.TicketOpened, helpdesk.tickets.TicketAssigned]}]", topic),
		testevents.Catalog(), &testevents.TicketOpened{}, &testevents.TicketAssigned{})
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

// walNow is a WAL position past every commit that has returned, which the
// slot is sure to pass (testkit.WALFlushedPast).
func (b *bundle) walNow() pglogrepl.LSN {
	b.t.Helper()
	lsn, err := testkit.WALFlushedPast(context.Background(), b.db)
	if err != nil {
		b.t.Fatal(err)
	}
	l, _ := pglogrepl.ParseLSN(lsn)
	return l
}

// waitSlotPast waits up to limit for the slot to confirm target; a timeout
// reports where the slot and the server's WAL stood.
func (b *bundle) waitSlotPast(target pglogrepl.LSN, limit time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		confirmed, active := b.slot()
		if confirmed >= target {
			return
		}
		if time.Now().After(deadline) {
			var insert, flush string
			_ = b.db.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text`).Scan(&insert, &flush)
			b.t.Fatalf("slot confirmed %s (active %v), not %s, within %s; WAL insert %s, flush %s", confirmed, active, target, limit, insert, flush)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Events appended before the relay starts (a backlog in the slot) and
// while it runs arrive once each, in order; a clean stop confirms them all,
// so a restarted relay publishes nothing twice.
func TestLogicalPublishesInOrder(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b.appendTickets(aggs, 4)
	if n := b.outboxCount(); n != 0 {
		t.Fatalf("logical mode wrote %d outbox rows", n)
	}
	r, stop := b.start(relay.Config{Mode: relay.ModeLogical})
	waitFor(t, func() bool { return r.Stats().Published == 20 })
	recs := b.consume(20)
	if dups := checkOrder(t, recs); dups != 0 {
		t.Errorf("%d duplicates without any failure", dups)
	}
	rec := recs[0]
	if header(rec, "eventline-event-type") != "helpdesk.tickets.TicketOpened" || header(rec, "eventline-aggregate-id") != string(rec.Key) || header(rec, "eventline-event-id") == "" {
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
		EventType: "helpdesk.tickets.TicketOpened", AggregateType: "ticket", AggregateID: agg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, $2::bytea)`, outboxmsg.Prefix("public"), big); err != nil {
		t.Fatal(err)
	}
	b.appendTickets([]string{agg}, 2)
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
	b.appendInOneTx([]string{agg}, int(v), int(v))
}

// setupLogicalOn is setupLogical on the database at url.
func setupLogicalOn(t *testing.T, url string) *bundle {
	t.Helper()
	f := testkit.Setup(t, testkit.Database(url), testkit.Mode(producer.ModeLogical))
	topic := testkit.UniqueName(t, "tickets")
	prod := f.Producer(t, fmt.Appendf(nil, "topics: [{name: %s, partitions: 4, events: [helpdesk.tickets.TicketOpened]}]", topic),
		testevents.Catalog(), &testevents.TicketOpened{})
	return &bundle{t: t, dbURL: f.DatabaseURL, db: f.DB, brokers: testkit.Kafka(t), topic: topic, prod: prod}
}

// run runs a relay and returns what Run returned.
func (b *bundle) run(cfg relay.Config) (r *relay.Relay, result <-chan error, cancel func()) {
	b.t.Helper()
	cfg.DatabaseURL, cfg.Brokers, cfg.Pipeline = b.dbURL, b.brokers, b.pipe()
	if cfg.Logger == nil {
		cfg.Logger = testkit.Logger(b.t)
	}
	r, err := relay.New(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	b.t.Cleanup(func() { stop(); r.Close() })
	return r, done, stop
}

// appendRange appends versions from..to of each aggregate, one event per
// transaction.
func (b *bundle) appendRange(aggs []string, from, to int64) {
	b.t.Helper()
	for v := from; v <= to; v++ {
		for _, agg := range aggs {
			b.appendVersion(agg, v)
		}
	}
}

// The relay is down while events are committed: the slot's lag says so in
// bytes and age; back, the relay delivers everything and the lag falls.
func TestLogicalRelayDownThenBack(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	r, stop := b.start(relay.Config{Mode: relay.ModeLogical})
	b.appendRange(aggs, 1, 1)
	waitFor(t, func() bool { return r.Stats().Published == 4 })
	stop()
	stoppedAt := time.Now()
	b.appendRange(aggs, 2, 101) // 400 events while no relay runs
	down := time.Since(stoppedAt)

	// Any relay (here a standby-to-be that has not started) reads the lag.
	probe, err := relay.New(relay.Config{DatabaseURL: b.dbURL, Brokers: b.brokers, Pipeline: b.pipe(), Mode: relay.ModeLogical})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	lag, err := probe.SlotLag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 400 events of some 200 bytes each, plus their transactions.
	if lag.Bytes < 400*200 || lag.Age < down || lag.Active || lag.WALStatus != "reserved" || lag.SafeBytes != -1 {
		t.Fatalf("lag while the relay is down %s: %+v", down, lag)
	}
	r2, _ := b.start(relay.Config{Mode: relay.ModeLogical, HeartbeatInterval: 100 * time.Millisecond, StatusInterval: 50 * time.Millisecond})
	recs := b.consume(404)
	if dups := checkOrder(t, recs); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	// Caught up: the lag falls to what was written since (heartbeats).
	var after relay.SlotLag
	testkit.WaitFor(t, 30*time.Second, "slot lag falling", func() bool {
		after, err = r2.SlotLag(ctx)
		return err == nil && after.Active && after.Bytes < 8<<10 && after.Age == 0
	})
	t.Logf("relay down %s: lag %d bytes, age %s; caught up: lag %d bytes (%+v)", down.Round(time.Millisecond), lag.Bytes, lag.Age.Round(time.Millisecond), after.Bytes, after)
}

// An open transaction holding an event stalls no other: the events
// committed meanwhile arrive while it is open, its own at its commit.
func TestLogicalLongTransactionStallsNothing(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	long := uuid.NewString()
	tx, err := b.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: long, AggregateVersion: 1, Event: opened(long)}); err != nil {
		t.Fatal(err)
	}
	r, _ := b.start(relay.Config{Mode: relay.ModeLogical})
	aggs := []string{uuid.NewString(), uuid.NewString()}
	b.appendRange(aggs, 1, 50)
	recs := b.consume(100)
	for _, rec := range recs {
		if string(rec.Key) == long {
			t.Fatal("the open transaction's event was published before its commit")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	recs = b.consume(101)
	checkOrder(t, recs)
	if string(recs[len(recs)-1].Key) != long && r.Stats().Published != 101 {
		t.Errorf("the long transaction's event did not arrive: %d published", r.Stats().Published)
	}
}

// Two relays on one slot: one streams, the other waits; when the leader
// stops the other takes over and nothing is lost. A foreign process holding
// the slot is reported and waited for.
func TestLogicalTwoRelaysOneSlot(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	var logs testkit.SyncBuffer
	cfg := relay.Config{Mode: relay.ModeLogical, StandbyRetry: 100 * time.Millisecond, Logger: newLogger(&logs)}
	first, stopFirst := b.start(cfg)
	waitFor(t, func() bool { return first.Stats().Leader })
	second, stopSecond := b.start(cfg)
	b.appendRange(aggs, 1, 10)
	waitFor(t, func() bool { return first.Stats().Published == 30 })
	if second.Stats().Leader || second.Stats().Published != 0 {
		t.Fatalf("standby: %+v", second.Stats())
	}
	if _, active := b.slot(); !active {
		t.Fatal("slot not active while the leader streams")
	}
	stopFirst()
	b.appendRange(aggs, 11, 20)
	waitFor(t, func() bool { return second.Stats().Leader && second.Stats().Published == 30 })
	if dups := checkOrder(t, b.consume(60)); dups != 0 {
		t.Errorf("%d duplicates after a clean handover", dups)
	}

	// A foreign walsender holds the slot (pg_recvlogical, a stuck old
	// relay): the leader reports it, waits, and streams once it lets go.
	stopSecond()
	testkit.WaitFor(t, 30*time.Second, "slot released", func() bool { _, active := b.slot(); return !active })
	rogue := b.holdSlot()
	third, _ := b.start(cfg)
	b.appendRange(aggs, 21, 21)
	testkit.WaitFor(t, 30*time.Second, "leader reporting the busy slot", func() bool {
		return third.Stats().Leader && strings.Contains(logs.String(), "is active in another process")
	})
	if third.Stats().Published != 0 {
		t.Fatal("published while another process held the slot")
	}
	rogue.Close(ctx)
	waitFor(t, func() bool { return third.Stats().Published >= 3 })
	if dups := checkOrder(t, b.consume(63)); dups > 0 {
		t.Logf("%d duplicates after the foreign holder (allowed)", dups)
	}
}

// holdSlot starts streaming the bundle's slot on a connection of its own.
func (b *bundle) holdSlot() *pgconn.PgConn {
	b.t.Helper()
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(b.dbURL)
	if err != nil {
		b.t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { conn.Close(context.Background()) })
	var slot string
	if err := b.db.QueryRow(ctx, `SELECT slot_name FROM pg_replication_slots WHERE database = current_database()`).Scan(&slot); err != nil {
		b.t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication, PluginArgs: []string{"proto_version '1'", "publication_names 'eventline_public'", "messages 'true'"},
	}); err != nil {
		b.t.Fatal(err)
	}
	testkit.WaitFor(b.t, 30*time.Second, "foreign holder active", func() bool { _, active := b.slot(); return active })
	return conn
}

// A heartbeat moves a quiet outbox's slot past the WAL other databases
// write, so PostgreSQL can recycle it.
func TestLogicalHeartbeatAdvancesQuietSlot(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	r, _ := b.start(relay.Config{Mode: relay.ModeLogical, HeartbeatInterval: 200 * time.Millisecond, StatusInterval: 100 * time.Millisecond})
	waitFor(t, func() bool { return r.Stats().Leader })
	// Another database of the cluster writes; nothing in this one.
	other := testkit.Postgres(t)
	odb, err := pgx.Connect(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer odb.Close(ctx)
	if _, err := odb.Exec(ctx, `CREATE TABLE busy AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	target := b.walNow()
	b.waitSlotPast(target, 30*time.Second)
	if r.Stats().Published != 0 {
		t.Errorf("published %d events on a quiet outbox", r.Stats().Published)
	}
	// Status updates come on the relay's timer, not only when the server
	// asks (it asks at wal_sender_timeout/2, 30 s by default): the reply
	// time the server records moves several times a second.
	replies := map[time.Time]bool{}
	testkit.WaitFor(t, 10*time.Second, "status updates on the timer", func() bool {
		var at time.Time
		if err := b.db.QueryRow(ctx, `SELECT r.reply_time FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.database = current_database()`).Scan(&at); err != nil {
			t.Fatal(err)
		}
		replies[at] = true
		return len(replies) >= 5
	})
}

// The relay refuses a role without REPLICATION with a clear, terminal
// error; logical mode refuses to write while no slot would decode it.
func TestLogicalPrerequisites(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	err := b.asRole(t, "NOREPLICATION").runUntilError(t, relay.Config{Mode: relay.ModeLogical})
	if !errors.Is(err, migrate.ErrNoReplicationPrivilege) || !strings.Contains(err.Error(), "REPLICATION") || strings.Contains(err.Error(), "pw") {
		t.Fatalf("Run without REPLICATION: %v", err)
	}

	// The slot is dropped: the producer writes nothing and says what to
	// run; the relay does not create a new slot silently (the events in
	// between would be skipped): ErrSlotLost.
	if _, err := b.db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`); err != nil {
		t.Fatal(err)
	}
	tx, err := b.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	agg := uuid.NewString()
	err = b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, Event: opened(agg)})
	_ = tx.Rollback(ctx)
	if !errors.Is(err, producer.ErrNotDecodable) || !strings.Contains(err.Error(), "eventline migrate --mode logical") {
		t.Fatalf("Append without a slot: %v", err)
	}
	if err := b.runUntilError(t, relay.Config{Mode: relay.ModeLogical}); !errors.Is(err, relay.ErrSlotLost) || !strings.Contains(err.Error(), "operations.md") {
		t.Fatalf("Run with the slot gone: %v", err)
	}
	// An event parked in logical mode is not requeued where no slot would
	// decode it: the parked row is its only copy.
	if _, err := b.db.Exec(ctx, `INSERT INTO eventline_outbox_parked (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, headers, created_at, error)
		VALUES (-123, $1, 'k', 'v', gen_random_uuid(), 'helpdesk.tickets.TicketOpened', 'ticket', 'k', '[]', now(), 'test')`, b.topic); err != nil {
		t.Fatal(err)
	}
	if ok, err := relay.Requeue(ctx, b.db, "", -123); ok || err == nil || !strings.Contains(err.Error(), "no usable replication slot") {
		t.Fatalf("requeue with no slot: %v %v", ok, err)
	}
	if parked, err := relay.ListParked(ctx, b.db, ""); err != nil || len(parked) != 1 {
		t.Fatalf("the parked event after a refused requeue: %+v %v", parked, err)
	}
}

// PostgreSQL invalidates the slot of a relay that was down while more than
// max_slot_wal_keep_size of WAL was written: the relay ends with
// ErrSlotInvalidated naming the recovery, and RecreateSlot recovers (the
// events in between are reported, not delivered).
func TestLogicalSlotInvalidated(t *testing.T) {
	t.Parallel()
	pg := testkit.RestartablePostgres(t)
	b := setupLogicalOn(t, pg.URL())
	ctx := context.Background()
	for _, q := range []string{`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`, `SELECT pg_reload_conf()`} {
		if _, err := b.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	aggs := []string{uuid.NewString()}
	r, stop := b.start(relay.Config{Mode: relay.ModeLogical})
	b.appendRange(aggs, 1, 1)
	waitFor(t, func() bool { return r.Stats().Published == 1 })
	stop()
	b.appendRange(aggs, 2, 2) // never delivered: its WAL goes
	if _, err := b.db.Exec(ctx, `CREATE TABLE junk AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 100000) g`); err != nil {
		t.Fatal(err)
	}
	b.waitSlotLost("slot invalidated")
	_, result, _ := b.run(relay.Config{Mode: relay.ModeLogical})
	select {
	case err := <-result:
		if !errors.Is(err, relay.ErrSlotInvalidated) || !strings.Contains(err.Error(), migrate.RecoveryDoc) {
			t.Fatalf("Run on an invalidated slot: %v", err)
		}
		t.Logf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run on an invalidated slot did not return")
	}

	var logs testkit.SyncBuffer
	r2, result2, _ := b.run(relay.Config{Mode: relay.ModeLogical, RecreateSlot: true, Logger: newLogger(&logs)})
	waitFor(t, func() bool { return r2.Stats().Leader && strings.Contains(logs.String(), "were not delivered") })
	b.appendRange(aggs, 3, 3)
	waitFor(t, func() bool { return r2.Stats().Published == 1 })
	recs := b.consume(2)
	if v := header(recs[1], "eventline-aggregate-version"); v != "3" {
		t.Errorf("after recreating the slot: version %s delivered, want 3", v)
	}

	// While the relay streams: an open transaction pins the slot's
	// restart_lsn, other sessions write past the limit, and the server
	// ends the relay's walsender (57P01) as it invalidates the slot.
	pin, err := b.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pin.Rollback(ctx) }()
	if _, err := pin.Exec(ctx, `SELECT txid_current()`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx, `SELECT pg_logical_emit_message(false, 'unrelated', 'x')`); err != nil { // a running-xacts record after the pin
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx, `CREATE TABLE junk2 AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 100000) g`); err != nil {
		t.Fatal(err)
	}
	b.waitSlotLost("slot invalidated while streaming")
	select {
	case err := <-result2:
		if !errors.Is(err, relay.ErrSlotInvalidated) {
			t.Fatalf("Run when the slot was invalidated under it: %v", err)
		}
		t.Logf("Run, invalidated while streaming: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return after the slot was invalidated under it; log:\n%s", logs.String())
	}
}

// On a server with wal_level=replica, logical mode says so and what to
// change: the relay ends with ErrNotLogical, a producer in logical mode
// writes nothing.
func TestLogicalNeedsWalLevelLogical(t *testing.T) {
	t.Parallel()
	pg := testkit.RestartablePostgres(t, map[string]string{"wal_level": "replica", "max_wal_senders": "4"})
	f := testkit.Setup(t, testkit.Database(pg.URL()))
	ctx := context.Background()
	topic := testkit.UniqueName(t, "tickets")
	b := &bundle{t: t, dbURL: f.DatabaseURL, db: f.DB, brokers: testkit.Kafka(t), topic: topic}
	_, result, _ := b.run(relay.Config{Mode: relay.ModeLogical})
	select {
	case err := <-result:
		if !errors.Is(err, migrate.ErrNotLogical) || !strings.Contains(err.Error(), "wal_level = logical") {
			t.Fatalf("Run on wal_level=replica: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run on wal_level=replica did not return")
	}
	pipe, err := pipeline.Parse(fmt.Appendf(nil, "topics: [{name: %s, partitions: 4, events: [helpdesk.tickets.TicketOpened]}]", topic))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := producer.New(ctx, producer.Config{DB: f.DB, Pipeline: pipe, Registry: f.Registry, Catalog: testevents.Catalog(), Events: []schemas.Event{&testevents.TicketOpened{}}, AutoRegister: true, Mode: producer.ModeLogical})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := f.DB.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	agg := uuid.NewString()
	if err := prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, Event: opened(agg)}); !errors.Is(err, producer.ErrNotDecodable) || !strings.Contains(err.Error(), "wal_level") {
		t.Fatalf("Append in logical mode on wal_level=replica: %v", err)
	}
}

// In logical mode every relay exports the slot's lag (bytes to read, bytes
// retained, age) with its other metrics.
func TestLogicalSlotMetrics(t *testing.T) {
	t.Parallel()
	b := setupLogical(t)
	ctx := context.Background()
	b.appendRange([]string{uuid.NewString()}, 1, 20) // no relay yet: lag
	r, err := relay.New(relay.Config{DatabaseURL: b.dbURL, Brokers: b.brokers, Pipeline: b.pipe(), Mode: relay.ModeLogical})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	reader := sdkmetric.NewManualReader()
	if err := r.RegisterMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	collect := func() map[string]float64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Gauge[int64]:
					got[m.Name] = float64(d.DataPoints[0].Value)
				case metricdata.Gauge[float64]:
					got[m.Name] = d.DataPoints[0].Value
				}
			}
		}
		return got
	}
	// The lag is measured to the WAL written (pg_current_wal_lsn); the test
	// cluster commits asynchronously, so the WAL writer may still hold it.
	var got map[string]float64
	testkit.WaitFor(t, 10*time.Second, "slot lag of 20 events", func() bool {
		got = collect()
		return got["eventline_relay_slot_lag"] >= 20*100
	})
	if got["eventline_relay_slot_retained"] < got["eventline_relay_slot_lag"] {
		t.Errorf("slot metrics with 20 events waiting: %v", got)
	}
	if _, ok := got["eventline_relay_slot_lag_age"]; !ok {
		t.Errorf("no slot lag age among %v", got)
	}
}

// waitSlotLost switches WAL segments and checkpoints until PostgreSQL has
// invalidated the bundle's slot (max_slot_wal_keep_size).
func (b *bundle) waitSlotLost(what string) {
	b.t.Helper()
	ctx := context.Background()
	testkit.WaitFor(b.t, 60*time.Second, what, func() bool {
		var status *string
		for _, q := range []string{`SELECT pg_switch_wal()`, `CHECKPOINT`} {
			if _, err := b.db.Exec(ctx, q); err != nil {
				b.t.Fatal(err)
			}
		}
		if err := b.db.QueryRow(ctx, `SELECT wal_status FROM pg_replication_slots WHERE database = current_database()`).Scan(&status); err != nil {
			b.t.Fatal(err)
		}
		return status != nil && *status == "lost"
	})
}
