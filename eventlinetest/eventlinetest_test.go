package eventlinetest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// schema is where the tests migrate eventline's tables: not "public", so
// the helpers' schema argument is exercised.
const schema = "app"

// bundle is one test's database, migrated into schema.
type bundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrate.Migrate(ctx, pool, migrate.Options{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	return &bundle{ctx: ctx, pool: pool}
}

// begin opens a transaction, rolled back when t ends unless committed.
func (b *bundle) begin(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(b.ctx)) })
	return tx
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// event is an outbox fixture, written with plain SQL as producer.Append
// writes a row.
type event struct {
	topic, eventType, aggType, aggID string
	version                          int64 // 0: NULL
	headers                          string
}

func (b *bundle) append(t *testing.T, db execer, e event) uuid.UUID {
	t.Helper()
	id := uuid.New()
	var version *int64
	if e.version != 0 {
		version = &e.version
	}
	if e.headers == "" {
		e.headers = "[]"
	}
	// The value mimics Confluent's wire format: magic byte, schema id 1,
	// then the (here fake) Avro body.
	value := append([]byte{0, 0, 0, 0, 1}, e.aggID...)
	if _, err := db.Exec(b.ctx, `INSERT INTO app.eventline_outbox
		(topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.topic, []byte(e.aggID), value, id, e.eventType, e.aggType, e.aggID, version, e.headers); err != nil {
		t.Fatalf("inserting outbox fixture: %v", err)
	}
	return id
}

func (b *bundle) apply(t *testing.T, db execer, group string, eventID uuid.UUID) {
	t.Helper()
	if _, err := db.Exec(b.ctx, `INSERT INTO app.eventline_consumer_dedupe (group_id, event_id) VALUES ($1, $2)`, group, eventID); err != nil {
		t.Fatalf("inserting dedupe fixture: %v", err)
	}
}

// recorder is a testing.TB that records failures instead of failing the
// test, so the tests can check the helpers' failure path and message. Its
// Fatal and FailNow return instead of ending the goroutine: the helpers
// return right after failing, so they survive that.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	failures []string
}

func (r *recorder) Helper() {}

func (r *recorder) fail(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, msg)
}

func (r *recorder) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *recorder) Fatalf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.fail(fmt.Sprint(args...)) }
func (r *recorder) Fatal(args ...any)                 { r.fail(fmt.Sprint(args...)) }
func (r *recorder) Fail()                             { r.fail("Fail") }
func (r *recorder) FailNow()                          { r.fail("FailNow") }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failures) > 0
}

// requireFailure checks that r recorded exactly one failure containing
// each of want.
func requireFailure(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) != 1 {
		t.Fatalf("recorded %d failures, want 1: %q", len(r.failures), r.failures)
	}
	t.Logf("failure message:\n%s", r.failures[0])
	for _, w := range want {
		if !strings.Contains(r.failures[0], w) {
			t.Errorf("failure message lacks %q:\n%s", w, r.failures[0])
		}
	}
}

func requireNoFailure(t *testing.T, r *recorder) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 0 {
		t.Fatalf("unexpected failures: %q", r.failures)
	}
}

var orderPlaced = event{
	topic: "orders", eventType: "shop.OrderPlaced", aggType: "order", aggID: "order-42", version: 3,
	headers: `[["traceparent","00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],["eventline-correlation-id","c-1"]]`,
}

var stockReserved = event{topic: "inventory", eventType: "shop.StockReserved", aggType: "sku", aggID: "sku-7"}

// Inside the appending transaction the helper sees the uncommitted row;
// another connection does not until the commit.
func TestRequireAppendedInTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx := b.begin(t)
	id := b.append(t, tx, orderPlaced)
	b.append(t, tx, stockReserved)

	got := eventlinetest.RequireAppended(b.ctx, t, tx, schema, eventlinetest.Match{EventType: "shop.OrderPlaced", AggregateID: "order-42"})
	if len(got) != 1 {
		t.Fatalf("got %d events, want 1: %v", len(got), got)
	}
	e := got[0]
	if e.EventID != id || e.Topic != "orders" || e.AggregateType != "order" || e.AggregateVersion != 3 ||
		string(e.Key) != "order-42" || string(e.Value[5:]) != "order-42" || e.CreatedAt.IsZero() {
		t.Errorf("event %+v", e)
	}
	if v, ok := e.Header("eventline-correlation-id"); !ok || v != "c-1" || len(e.Headers) != 2 {
		t.Errorf("headers %v", e.Headers)
	}
	if _, ok := e.Header("nope"); ok {
		t.Error("Header found a header that is not there")
	}

	// The pool does not see the uncommitted rows.
	rec := &recorder{TB: t}
	eventlinetest.RequireAppended(b.ctx, rec, b.pool, schema, eventlinetest.Match{EventType: "shop.OrderPlaced"})
	requireFailure(t, rec, "the outbox is empty")
	eventlinetest.RequireNotAppended(b.ctx, t, b.pool, schema, eventlinetest.Match{})

	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	all := eventlinetest.RequireAppended(b.ctx, t, b.pool, schema, eventlinetest.Match{})
	if len(all) != 2 || all[0].EventID != id || all[1].EventType != "shop.StockReserved" || all[1].AggregateVersion != 0 {
		t.Fatalf("after commit: %v", all)
	}
	byID := eventlinetest.RequireAppended(b.ctx, t, b.pool, schema, eventlinetest.Match{EventID: id, Topic: "orders", AggregateType: "order"})
	if len(byID) != 1 || byID[0].ID != all[0].ID {
		t.Fatalf("by event id: %v", byID)
	}
}

// A *pgx.Conn is a Querier too, and "" is the public schema.
func TestRequireAppendedOnConnInPublicSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.WithoutCancel(ctx)) })
	if _, err := migrate.Migrate(ctx, conn, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO public.eventline_outbox
		(topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ('orders', 'order-1', '\x00', gen_random_uuid(), 'shop.OrderPlaced', 'order', 'order-1')`); err != nil {
		t.Fatal(err)
	}
	got := eventlinetest.RequireAppended(ctx, t, conn, "", eventlinetest.Match{AggregateID: "order-1"})
	if len(got) != 1 || got[0].EventType != "shop.OrderPlaced" || len(got[0].Headers) != 0 {
		t.Fatalf("got %v", got)
	}
}

// When nothing matches, the helper fails once, says what it looked for and
// lists what the outbox holds, and returns nil.
func TestRequireAppendedFailureListsRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx := b.begin(t)
	id := b.append(t, tx, orderPlaced)
	b.append(t, tx, stockReserved)

	rec := &recorder{TB: t}
	got := eventlinetest.RequireAppended(b.ctx, rec, tx, schema, eventlinetest.Match{EventType: "shop.OrderPlaced", AggregateID: "order-43"})
	if got != nil {
		t.Errorf("returned %v on failure", got)
	}
	requireFailure(t, rec,
		`no event with event_type="shop.OrderPlaced" aggregate_id="order-43" in "app"."eventline_outbox"`,
		"it holds 2 rows:",
		"topic=orders event_type=shop.OrderPlaced aggregate=order/order-42@3 event_id="+id.String(),
		"topic=inventory event_type=shop.StockReserved aggregate=sku/sku-7 event_id=",
	)
}

// With more rows than a message shows, it lists the latest.
func TestRequireAppendedFailureListsLatestRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx := b.begin(t)
	for i := range 25 {
		e := stockReserved
		e.aggID = fmt.Sprintf("sku-%d", i)
		b.append(t, tx, e)
	}
	rec := &recorder{TB: t}
	eventlinetest.RequireAppended(b.ctx, rec, tx, schema, eventlinetest.Match{EventType: "shop.OrderPlaced"})
	requireFailure(t, rec, "it holds 25 rows, the last 20:", "aggregate=sku/sku-24 ")
	if strings.Contains(rec.failures[0], "aggregate=sku/sku-4 ") {
		t.Errorf("listed an early row:\n%s", rec.failures[0])
	}
}

func TestRequireNotAppended(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx := b.begin(t)
	b.append(t, tx, orderPlaced)

	rec := &recorder{TB: t}
	eventlinetest.RequireNotAppended(b.ctx, rec, tx, schema, eventlinetest.Match{EventType: "shop.OrderCancelled"})
	eventlinetest.RequireNotAppended(b.ctx, rec, tx, schema, eventlinetest.Match{EventType: "shop.OrderPlaced", AggregateType: "cart"})
	requireNoFailure(t, rec)

	eventlinetest.RequireNotAppended(b.ctx, rec, tx, schema, eventlinetest.Match{AggregateID: "order-42"})
	requireFailure(t, rec, `want no event with aggregate_id="order-42"`, "event_type=shop.OrderPlaced aggregate=order/order-42@3")
}

func TestRequireApplied(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx := b.begin(t)
	id := b.append(t, tx, orderPlaced)
	b.apply(t, tx, "inventory", id)
	b.apply(t, tx, "billing", uuid.New())

	eventlinetest.RequireApplied(b.ctx, t, tx, schema, "inventory", id)
	eventlinetest.RequireNotApplied(b.ctx, t, tx, schema, "billing", id)

	rec := &recorder{TB: t}
	eventlinetest.RequireApplied(b.ctx, rec, tx, schema, "billing", id)
	requireFailure(t, rec,
		fmt.Sprintf(`event %s was not applied by group "billing" (in "app"."eventline_consumer_dedupe")`, id),
		`applied by "inventory" at `, `group "billing" applied 1 other events`)

	rec = &recorder{TB: t}
	other := uuid.New()
	eventlinetest.RequireApplied(b.ctx, rec, tx, schema, "billing", other)
	requireFailure(t, rec, "was not applied", "no group applied it")

	rec = &recorder{TB: t}
	eventlinetest.RequireNotApplied(b.ctx, rec, tx, schema, "inventory", id)
	requireFailure(t, rec, fmt.Sprintf(`want event %s not applied by group "inventory", but "app"."eventline_consumer_dedupe" records it applied at `, id))
}

// A database error (here: no eventline tables in that schema) fails the
// test with the error rather than reporting the event missing.
func TestHelpersReportQueryErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, call := range map[string]func(testing.TB){
		"RequireAppended": func(tb testing.TB) {
			eventlinetest.RequireAppended(b.ctx, tb, b.pool, "nope", eventlinetest.Match{})
		},
		"RequireNotAppended": func(tb testing.TB) {
			eventlinetest.RequireNotAppended(b.ctx, tb, b.pool, "nope", eventlinetest.Match{})
		},
		"RequireApplied": func(tb testing.TB) {
			eventlinetest.RequireApplied(b.ctx, tb, b.pool, "nope", "g", uuid.New())
		},
		"RequireNotApplied": func(tb testing.TB) {
			eventlinetest.RequireNotApplied(b.ctx, tb, b.pool, "nope", "g", uuid.New())
		},
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{TB: t}
			call(rec)
			requireFailure(t, rec, `error reading "nope".`, "does not exist")
		})
	}
}
