package eventlinetest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/schemas"
)

// msgBundle is a database set up for logical mode (schema "public") with
// a producer of TicketOpened in that mode.
type msgBundle struct {
	ctx   context.Context
	f     *testkit.Fixture
	topic string
	prod  *producer.Producer
}

func setupMessage(t *testing.T) *msgBundle {
	t.Helper()
	f := testkit.Setup(t, testkit.Mode(producer.ModeLogical))
	topic := testkit.UniqueName(t, "tickets")
	return &msgBundle{ctx: context.Background(), f: f, topic: topic, prod: messageProducer(t, f, topic, "")}
}

func messageProducer(t *testing.T, f *testkit.Fixture, topic, schema string) *producer.Producer {
	t.Helper()
	p, err := pipeline.Parse(fmt.Appendf(nil, "topics: [{name: %s, partitions: 1, events: [helpdesk.tickets.TicketOpened]}]", topic))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := producer.New(context.Background(), producer.Config{DB: f.DB, Pipeline: p, Registry: f.Registry, Catalog: testevents.Catalog(),
		Events: []schemas.Event{&testevents.TicketOpened{}}, AutoRegister: true, Mode: producer.ModeLogical, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return prod
}

// ticketUUID is the ticket id (a UUID in TicketOpened) of aggregate id.
func ticketUUID(id string) string { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(id)).String() }

func opened(id string) *testevents.TicketOpened {
	return &testevents.TicketOpened{TicketID: ticketUUID(id), RequesterID: ticketUUID("c-" + id), Attachments: []testevents.Attachment{}, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()}
}

func openedMsg(id string) producer.Message {
	return producer.Message{AggregateType: "ticket", AggregateID: id, Event: opened(id)}
}

// appendTx appends msgs with prod in a new transaction, rolled back when
// t ends unless committed.
func (b *msgBundle) appendTx(t *testing.T, prod *producer.Producer, msgs ...producer.Message) pgx.Tx {
	t.Helper()
	tx, err := b.f.DB.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(b.ctx)) })
	if err := prod.Append(b.ctx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	return tx
}

func (b *msgBundle) commit(t *testing.T, prod *producer.Producer, msgs ...producer.Message) {
	t.Helper()
	if err := b.appendTx(t, prod, msgs...).Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
}

// What a logical-mode Append wrote is found after the commit, with the
// fields the table version reads from a row; nothing is found before.
func TestCaptureMessages(t *testing.T) {
	t.Parallel()
	b := setupMessage(t)
	c := eventlinetest.CaptureMessages(b.ctx, t, b.f.DB, "")

	id := uuid.New()
	first := openedMsg("ticket-42")
	first.AggregateVersion, first.EventID, first.CorrelationID, first.Headers = 3, id, "c-1", map[string]string{"tenant": "t1"}
	tx := b.appendTx(t, b.prod, first, openedMsg("ticket-43"))

	// Before the commit nothing is decoded.
	c.RequireNotAppended(b.ctx, t, eventlinetest.Match{})
	rec := &recorder{TB: t}
	if got := c.RequireAppended(b.ctx, rec, eventlinetest.Match{}); got != nil {
		t.Errorf("returned %v on failure", got)
	}
	requireFailure(t, rec, "no event with any event in the messages committed to schema public since CaptureMessages; none was committed",
		"assert after the commit")

	before := time.Now()
	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	got := c.RequireAppended(b.ctx, t, eventlinetest.Match{EventType: "helpdesk.tickets.TicketOpened", AggregateID: "ticket-42"})
	if len(got) != 1 {
		t.Fatalf("got %d events, want 1: %v", len(got), got)
	}
	e := got[0]
	if e.EventID != id || e.Topic != b.topic || e.AggregateType != "ticket" || e.AggregateVersion != 3 || string(e.Key) != "ticket-42" || e.ID >= 0 {
		t.Errorf("event %+v", e)
	}
	if e.CreatedAt.Before(before.Add(-time.Second)) || e.CreatedAt.After(after.Add(time.Second)) {
		t.Errorf("CreatedAt %s, want the commit time (between %s and %s)", e.CreatedAt, before, after)
	}
	var payload testevents.TicketOpened
	if err := b.f.Serde.Decode(b.ctx, e.Value, &payload); err != nil || payload.TicketID != ticketUUID("ticket-42") || payload.RequesterID != ticketUUID("c-ticket-42") {
		t.Errorf("value decodes to %+v, %v", payload, err)
	}
	if v, ok := e.Header("eventline-correlation-id"); !ok || v != "c-1" {
		t.Errorf("headers %v", e.Headers)
	}
	if v, ok := e.Header("tenant"); !ok || v != "t1" {
		t.Errorf("headers %v", e.Headers)
	}

	// A later transaction comes after, in commit order.
	b.commit(t, b.prod, openedMsg("ticket-44"))
	all := c.RequireAppended(b.ctx, t, eventlinetest.Match{})
	if len(all) != 3 || all[0].EventID != id || all[1].AggregateID != "ticket-43" || all[2].AggregateID != "ticket-44" {
		t.Fatalf("all: %v", all)
	}
	if all[1].AggregateVersion != 0 || len(all[1].Headers) != 0 || !all[1].CreatedAt.Equal(e.CreatedAt) || all[2].CreatedAt.Before(e.CreatedAt) {
		t.Errorf("second and third: %+v %+v", all[1], all[2])
	}
	if !(all[0].ID > all[1].ID && all[1].ID > all[2].ID) {
		t.Errorf("ids %d %d %d: want minus increasing WAL positions", all[0].ID, all[1].ID, all[2].ID)
	}
	byID := c.RequireAppended(b.ctx, t, eventlinetest.Match{EventID: id, Topic: b.topic, AggregateType: "ticket"})
	if len(byID) != 1 || byID[0].ID != e.ID {
		t.Fatalf("by event id: %v", byID)
	}
	// Logical mode wrote no row: the table helpers see nothing.
	eventlinetest.RequireNotAppended(b.ctx, t, b.f.DB, "", eventlinetest.Match{})
}

// A rolled-back transaction's events are never decoded.
func TestCaptureMessagesRollback(t *testing.T) {
	t.Parallel()
	b := setupMessage(t)
	c := eventlinetest.CaptureMessages(b.ctx, t, b.f.DB, "")

	tx := b.appendTx(t, b.prod, openedMsg("ticket-1"))
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	b.commit(t, b.prod, openedMsg("ticket-2"))

	c.RequireNotAppended(b.ctx, t, eventlinetest.Match{AggregateID: "ticket-1"})
	if got := c.RequireAppended(b.ctx, t, eventlinetest.Match{}); len(got) != 1 || got[0].AggregateID != "ticket-2" {
		t.Fatalf("got %v", got)
	}

	rec := &recorder{TB: t}
	c.RequireNotAppended(b.ctx, rec, eventlinetest.Match{AggregateID: "ticket-2"})
	requireFailure(t, rec, `want no event with aggregate_id="ticket-2" in the messages committed to schema public since CaptureMessages, found:`,
		"topic="+b.topic+" event_type=helpdesk.tickets.TicketOpened aggregate=ticket/ticket-2 event_id=")
}

// When nothing matches, the helper fails once, says what it looked for and
// lists the latest events captured, and returns nil.
func TestCaptureMessagesFailureListsEvents(t *testing.T) {
	t.Parallel()
	b := setupMessage(t)
	c := eventlinetest.CaptureMessages(b.ctx, t, b.f.DB, "")
	b.commit(t, b.prod, openedMsg("ticket-1"), openedMsg("ticket-2"))

	rec := &recorder{TB: t}
	if got := c.RequireAppended(b.ctx, rec, eventlinetest.Match{EventType: "helpdesk.tickets.TicketOpened", AggregateID: "ticket-9"}); got != nil {
		t.Errorf("returned %v on failure", got)
	}
	requireFailure(t, rec, `no event with event_type="helpdesk.tickets.TicketOpened" aggregate_id="ticket-9" in the messages committed to schema public since CaptureMessages; it captured 2 events:`,
		"aggregate=ticket/ticket-1 ", "aggregate=ticket/ticket-2 ")

	var many []producer.Message
	for i := range 25 {
		many = append(many, openedMsg(fmt.Sprintf("bulk-%d", i)))
	}
	b.commit(t, b.prod, many...)
	rec = &recorder{TB: t}
	c.RequireAppended(b.ctx, rec, eventlinetest.Match{AggregateType: "cart"})
	requireFailure(t, rec, "it captured 27 events, the last 20:", "aggregate=ticket/bulk-24 ", "aggregate=ticket/bulk-5 ")
	for _, early := range []string{"aggregate=ticket/bulk-4 ", "aggregate=ticket/ticket-2 "} {
		if strings.Contains(rec.failures[0], early) {
			t.Errorf("listed an early event %q:\n%s", early, rec.failures[0])
		}
	}
}

// A Capture sees its schema's outbox events committed after its creation:
// not those committed before, not another schema's, not messages with
// other prefixes or written outside a transaction.
func TestCaptureMessagesSeesOnlyItsOutbox(t *testing.T) {
	t.Parallel()
	b := setupMessage(t)
	if _, err := migrate.Migrate(b.ctx, b.f.DB, migrate.Options{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.SetupLogical(b.ctx, b.f.DB, migrate.LogicalOptions{Schema: schema, Emitters: []string{testkit.CurrentRole(t, b.f.DB)}}); err != nil {
		t.Fatal(err)
	}
	appProd := messageProducer(t, b.f, b.topic, schema)

	b.commit(t, b.prod, openedMsg("before"))
	public := eventlinetest.CaptureMessages(b.ctx, t, b.f.DB, "")
	app := eventlinetest.CaptureMessages(b.ctx, t, b.f.DB, schema)

	content, err := outboxmsg.Encode(&outboxmsg.Event{Topic: b.topic, Key: []byte("raw"), Value: []byte{0}, EventID: uuid.New(),
		EventType: "helpdesk.tickets.TicketOpened", AggregateType: "ticket", AggregateID: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		transactional bool
		prefix        string
		content       []byte
	}{
		{false, outboxmsg.Prefix("public"), content}, // outside a transaction
		{true, "another-app", []byte("not an event")},
		{true, outboxmsg.HeartbeatPrefix("public"), nil},
	} {
		if _, err := b.f.DB.Exec(b.ctx, `SELECT pg_logical_emit_message($1, $2, $3::bytea)`, q.transactional, q.prefix, q.content); err != nil {
			t.Fatal(err)
		}
	}
	b.commit(t, b.prod, openedMsg("public-1"))
	b.commit(t, appProd, openedMsg("app-1"))

	if got := public.RequireAppended(b.ctx, t, eventlinetest.Match{}); len(got) != 1 || got[0].AggregateID != "public-1" {
		t.Errorf("public: %v", got)
	}
	if got := app.RequireAppended(b.ctx, t, eventlinetest.Match{}); len(got) != 1 || got[0].AggregateID != "app-1" {
		t.Errorf("app: %v", got)
	}
}

// CaptureMessages refuses a database not set up for logical mode, and its
// slot is gone when the test ends.
func TestCaptureMessagesSetup(t *testing.T) {
	t.Parallel()
	b := setup(t) // migrated, no SetupLogical
	rec := &recorder{TB: t}
	if c := eventlinetest.CaptureMessages(b.ctx, rec, b.pool, schema); c != nil {
		t.Error("returned a Capture on failure")
	}
	requireFailure(t, rec, "capturing messages of schema app: publication eventline_app does not exist", "migrate.SetupLogical")

	m := setupMessage(t)
	slots := func() (n int, temporary bool) {
		t.Helper()
		if err := m.f.DB.QueryRow(m.ctx, `SELECT count(*), coalesce(bool_and(temporary), false) FROM pg_replication_slots
			WHERE database = current_database() AND slot_name LIKE 'eventlinetest\_%'`).Scan(&n, &temporary); err != nil {
			t.Fatal(err)
		}
		return n, temporary
	}
	t.Run("capture", func(t *testing.T) {
		eventlinetest.CaptureMessages(m.ctx, t, m.f.DB, "")
		if n, temporary := slots(); n != 1 || !temporary {
			t.Fatalf("%d capture slots (temporary %v), want 1 temporary", n, temporary)
		}
	})
	if n, _ := slots(); n != 0 {
		t.Fatalf("%d capture slots after the test ended", n)
	}
}
