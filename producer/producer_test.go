package producer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/schemas"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type bundle struct {
	db   *pgxpool.Pool
	reg  *srfake.Registry
	cl   *sr.Client
	prod *producer.Producer
	pipe *pipeline.Pipeline
}

func setup(t *testing.T) *bundle {
	t.Helper()
	f := testkit.Setup(t)
	// srfake, not the fixture's registry: TestStartupResolution closes it
	// to show appends need no registry after startup.
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	pipe := testevents.Pipeline()
	prod, err := producer.New(context.Background(), producer.Config{DB: f.DB, Pipeline: pipe, Registry: cl, Catalog: testevents.Catalog(), Events: testevents.All(), AutoRegister: true})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: f.DB, reg: reg, cl: cl, prod: prod, pipe: pipe}
}

func opened(id string) *testevents.TicketOpened {
	return &testevents.TicketOpened{
		TicketID: id, RequesterID: "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e",
		Attachments:     []testevents.Attachment{{BlobID: "a4d3c2b1-0f9e-4d8c-b7a6-958473625140", Pages: 1, SizeBytes: 100}},
		EstimateMinutes: 100, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC(),
	}
}

func (b *bundle) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM eventline_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAppendWritesOneRowInTheCallersTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ticketID := uuid.NewString()
	eventID := uuid.New()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	tx, err := b.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.prod.Append(ctx, tx, producer.Message{
		AggregateType: "ticket", AggregateID: ticketID, AggregateVersion: 1, EventID: eventID,
		CorrelationID: "corr-1", Headers: map[string]string{"tenant": "acme"}, Event: opened(ticketID),
	}); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t); n != 0 {
		t.Fatalf("row visible before commit: %d", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	var (
		topic, eventType, aggType, aggID string
		key, value                       []byte
		gotEventID                       uuid.UUID
		version                          *int64
		headers                          [][2]string
	)
	if err := b.db.QueryRow(ctx, `SELECT topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers FROM eventline_outbox`).
		Scan(&topic, &key, &value, &gotEventID, &eventType, &aggType, &aggID, &version, &headers); err != nil {
		t.Fatal(err)
	}
	if topic != "tickets.events" || string(key) != ticketID || gotEventID != eventID || eventType != "helpdesk.tickets.TicketOpened" || aggType != "ticket" || aggID != ticketID || version == nil || *version != 1 {
		t.Fatalf("row: topic %s key %s event %s type %s agg %s/%s version %v", topic, key, gotEventID, eventType, aggType, aggID, version)
	}
	want := [][2]string{{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, {"eventline-correlation-id", "corr-1"}, {"tenant", "acme"}}
	if fmt.Sprint(headers) != fmt.Sprint(want) {
		t.Errorf("headers %v, want %v", headers, want)
	}
	// The value is Confluent-framed with the subject's id and decodes back.
	ss, err := b.cl.SchemaByVersion(ctx, "tickets.events-helpdesk.tickets.TicketOpened", -1)
	if err != nil {
		t.Fatal(err)
	}
	var got testevents.TicketOpened
	if err := schemas.NewSerde(b.cl).Decode(ctx, value, &got); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := schemas.SplitHeader(value); id != ss.ID || got.TicketID != ticketID {
		t.Fatalf("value carries id %d (subject has %d), ticket %s", id, ss.ID, got.TicketID)
	}
}

func TestAppendRollbackWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tx, _ := b.db.Begin(ctx)
	id := uuid.NewString()
	if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: id, Event: opened(id)}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t); n != 0 {
		t.Fatalf("%d rows after rollback", n)
	}
}

// Invalid input is refused before anything is written, and the caller's
// transaction stays usable (no statement failed inside it).
func TestAppendRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	good := uuid.NewString()
	badEnum := &testevents.TicketClosed{TicketID: good, RequesterID: good, Resolution: "BECAUSE", ClosedAt: time.Now()}
	badUUID := opened("not-a-uuid")
	for _, tc := range []struct {
		name string
		msgs []producer.Message
		want error
		text string
	}{
		{"no payload", []producer.Message{{AggregateType: "ticket", AggregateID: good}}, producer.ErrInvalidEvent, "no payload"},
		{"no aggregate id", []producer.Message{{AggregateType: "ticket", Event: opened(good)}}, producer.ErrInvalidEvent, "aggregate type and id"},
		{"enum symbol", []producer.Message{{AggregateType: "ticket", AggregateID: good, Event: badEnum}}, producer.ErrInvalidEvent, "BECAUSE"},
		{"uuid", []producer.Message{{AggregateType: "ticket", AggregateID: good, Event: badUUID}}, producer.ErrInvalidEvent, "/ticket_id"},
		{"reserved header", []producer.Message{{AggregateType: "ticket", AggregateID: good, Event: opened(good), Headers: map[string]string{"eventline-attempt": "1"}}}, producer.ErrInvalidEvent, "reserved"},
		{"unknown type", []producer.Message{{AggregateType: "x", AggregateID: "1", Event: &stranger{}}}, producer.ErrUnknownEventType, "test.Stranger"},
		{"second of two bad", []producer.Message{{AggregateType: "ticket", AggregateID: good, Event: opened(good)}, {AggregateType: "ticket", Event: opened(good)}}, producer.ErrInvalidEvent, "event 2 of 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := b.db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			err = b.prod.Append(ctx, tx, tc.msgs...)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.text)
			}
			if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
				t.Fatalf("transaction unusable after a refused append: %v", err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if n := b.count(t); n != 0 {
				t.Fatalf("%d rows written", n)
			}
		})
	}
}

type stranger struct{}

func (*stranger) Schema() avro.Schema {
	return avro.MustParse(`{"type":"record","name":"Stranger","namespace":"test","fields":[]}`)
}

func TestAppendManyKeepsOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tx, _ := b.db.Begin(ctx)
	var msgs []producer.Message
	var ids []string
	for i := 0; i < 20; i++ {
		id := uuid.NewString()
		ids = append(ids, id)
		msgs = append(msgs, producer.Message{AggregateType: "ticket", AggregateID: id, Event: opened(id)})
	}
	if err := b.prod.Append(ctx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, _ := b.db.Query(ctx, `SELECT aggregate_id FROM eventline_outbox ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("outbox order %v (%v), want %v", got, err, ids)
	}
}

// With auto-register off, a schema missing from the registry fails startup
// naming the subject and the command that registers it; once started, a
// registry outage does not block appends.
func TestStartupResolution(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	empty := srfake.New()
	defer empty.Close()
	cl, _ := sr.NewClient(sr.URLs(empty.URL()))
	_, err := producer.New(ctx, producer.Config{DB: b.db, Pipeline: b.pipe, Registry: cl, Catalog: testevents.Catalog(), Events: testevents.All()})
	if !errors.Is(err, producer.ErrNotRegistered) || !strings.Contains(err.Error(), "eventline schemas register") || !strings.Contains(err.Error(), "-helpdesk.") {
		t.Fatalf("got %v", err)
	}
	down, _ := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	if _, err := producer.New(ctx, producer.Config{DB: b.db, Pipeline: b.pipe, Registry: down, Catalog: testevents.Catalog(), Events: testevents.All()}); err == nil || !strings.Contains(err.Error(), "registry") {
		t.Fatalf("registry down at startup: %v", err)
	}

	// Lookup-only works once the schemas are registered (here by the
	// auto-registering producer of setup).
	p, err := producer.New(ctx, producer.Config{DB: b.db, Pipeline: b.pipe, Registry: b.cl, Catalog: testevents.Catalog(), Events: testevents.All()})
	if err != nil {
		t.Fatal(err)
	}
	b.reg.Close() // registry gone
	tx, _ := b.db.Begin(ctx)
	id := uuid.NewString()
	if err := p.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: id, Event: opened(id)}); err != nil {
		t.Fatalf("append with the registry down: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// 16 writers append concurrently to the same 50 aggregates, holding their
// transactions open for a random moment after the append. For every
// aggregate, outbox id order must equal commit order (track_commit_timestamp
// is on in the test cluster): the advisory lock is what guarantees it.
func TestAppendConcurrentWritersPerAggregateCommitOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	aggs := make([]string, 50)
	for i := range aggs {
		aggs[i] = uuid.NewString()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := appendOne(ctx, b, aggs[rand.IntN(len(aggs))]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var violations int
	if err := b.db.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT pg_xact_commit_timestamp(xmin) AS ts,
			       lag(pg_xact_commit_timestamp(xmin)) OVER (PARTITION BY aggregate_id ORDER BY id) AS prev
			FROM eventline_outbox) s
		WHERE ts < prev`).Scan(&violations); err != nil {
		t.Fatal(err)
	}
	if violations != 0 {
		t.Fatalf("%d rows have an outbox id ahead of an earlier-committed row of the same aggregate", violations)
	}
	if n := b.count(t); n != 16*25 {
		t.Fatalf("%d rows, want %d", n, 16*25)
	}
}

func appendOne(ctx context.Context, b *bundle, agg string) error {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, Event: opened(agg)}); err != nil {
		return err
	}
	// Widen the window between insert and commit.
	if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, rand.Float64()*0.003); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
