package consumers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/schemas"
)

type bundle struct {
	db    *pgxpool.Pool
	serde *schemas.Serde
	id    int // schema id of OrderCreated
}

func setup(t *testing.T) *bundle { return setupB(t) }

func setupB(t testing.TB) *bundle {
	t.Helper()
	ctx := context.Background()
	db, err := pgxpool.New(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := migrate.Migrate(ctx, db, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `CREATE TABLE totals (order_id uuid PRIMARY KEY, total bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	cl, err := sr.NewClient(sr.URLs(testkit.Registry(t)))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := schemas.Lookup("eventline.orders.OrderCreated")
	ss, err := cl.CreateSchema(ctx, "orders-"+info.Name, sr.Schema{Schema: info.Text})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, serde: schemas.NewSerde(cl), id: ss.ID}
}

func (b *bundle) record(t *testing.T, eventID string, orderID string, total int64, offset int64) *kgo.Record {
	return b.recordB(t, eventID, orderID, total, offset)
}

func (b *bundle) recordB(t testing.TB, eventID string, orderID string, total int64, offset int64) *kgo.Record {
	t.Helper()
	info, _ := schemas.Lookup("eventline.orders.OrderCreated")
	v, err := schemas.Encode(b.id, info.Schema, &schemas.OrderCreated{OrderID: orderID, CustomerID: orderID, Lines: []schemas.OrderLine{}, TotalMinor: total, Currency: "EUR", CreatedAt: time.UnixMilli(1_790_000_000_000).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: "orders", Partition: 0, Offset: offset, Key: []byte(orderID), Value: v, Headers: []kgo.RecordHeader{
		{Key: "eventline-event-id", Value: []byte(eventID)},
		{Key: "eventline-event-type", Value: []byte(info.Name)},
		{Key: "eventline-aggregate-type", Value: []byte("order")},
		{Key: "eventline-aggregate-id", Value: []byte(orderID)},
		{Key: "eventline-aggregate-version", Value: []byte("1")},
	}}
}

var errBoom = errors.New("boom")

// The handler adds the order total to a running sum; it fails for totals of
// 13 and panics for 666.
func handler(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
	o := ev.Payload.(*schemas.OrderCreated)
	if _, err := tx.Exec(ctx, `INSERT INTO totals VALUES ($1, $2) ON CONFLICT (order_id) DO UPDATE SET total = totals.total + EXCLUDED.total`, o.OrderID, o.TotalMinor); err != nil {
		return err
	}
	switch o.TotalMinor {
	case 13:
		return errBoom // after a write: the savepoint must undo it
	case 666:
		panic("handler bug")
	}
	return nil
}

func (b *bundle) total(t *testing.T, orderID string) int64 {
	var n int64
	err := b.db.QueryRow(context.Background(), `SELECT coalesce(sum(total), 0) FROM totals WHERE order_id = $1`, orderID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Each event's effect lands exactly once: re-applying the batch (as after a
// crash before the offset commit) finds every dedupe row and skips.
func TestApplyBatchExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	order := uuid.NewString()
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, b.record(t, uuid.NewString(), order, 100, int64(i)))
	}
	recs = append(recs, recs[3]) // a duplicate inside the batch
	a := consumers.NewApplier("g1", "", b.serde, handler)
	res, err := a.ApplyBatch(ctx, b.db, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := consumers.Applied
		if i == 10 {
			want = consumers.Duplicate
		}
		if r.Outcome != want {
			t.Fatalf("record %d: %s (%v), want %s", i, r.Outcome, r.Err, want)
		}
	}
	if got := b.total(t, order); got != 1000 {
		t.Fatalf("total %d, want 1000", got)
	}
	res, err = a.ApplyBatch(ctx, b.db, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != consumers.Duplicate {
			t.Fatalf("re-applied record %d: %s", i, r.Outcome)
		}
	}
	if got := b.total(t, order); got != 1000 {
		t.Fatalf("total after re-apply %d, want 1000", got)
	}
	// Another group applies the same events independently.
	other := consumers.NewApplier("g2", "", b.serde, handler)
	if _, err := other.ApplyBatch(ctx, b.db, recs[:1]); err != nil {
		t.Fatal(err)
	}
	if got := b.total(t, order); got != 1100 {
		t.Fatalf("total after group g2 %d, want 1100", got)
	}
}

// A failing record is rolled back to its savepoint (its write and its
// dedupe row), the others commit; a later retry of it applies it.
func TestApplyBatchIsolatesFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	order := uuid.NewString()
	failID := uuid.NewString()
	recs := []*kgo.Record{
		b.record(t, uuid.NewString(), order, 1, 0),
		b.record(t, failID, order, 13, 1),
		b.record(t, uuid.NewString(), order, 666, 2),
		{Topic: "orders", Offset: 3, Value: []byte("garbage"), Headers: []kgo.RecordHeader{{Key: "eventline-event-id", Value: []byte(uuid.NewString())}, {Key: "eventline-event-type", Value: []byte("eventline.orders.OrderCreated")}}},
		{Topic: "orders", Offset: 4, Value: []byte{0, 0, 0, 0, 1}},
		b.record(t, uuid.NewString(), order, 2, 5),
	}
	a := consumers.NewApplier("g", "", b.serde, handler)
	res, err := a.ApplyBatch(ctx, b.db, recs)
	if err != nil {
		t.Fatal(err)
	}
	want := []consumers.Outcome{consumers.Applied, consumers.Failed, consumers.Failed, consumers.Failed, consumers.Failed, consumers.Applied}
	for i, r := range res {
		if r.Outcome != want[i] {
			t.Fatalf("record %d: %s (%v), want %s", i, r.Outcome, r.Err, want[i])
		}
	}
	if !errors.Is(res[1].Err, errBoom) || consumers.IsPermanent(res[1].Err) {
		t.Errorf("handler error: %v (permanent %v), want boom, retriable", res[1].Err, consumers.IsPermanent(res[1].Err))
	}
	for _, i := range []int{2, 3, 4} {
		if !consumers.IsPermanent(res[i].Err) {
			t.Errorf("record %d: %v should be permanent", i, res[i].Err)
		}
	}
	if !errors.Is(res[4].Err, consumers.ErrNoEventID) {
		t.Errorf("record without event id: %v", res[4].Err)
	}
	if got := b.total(t, order); got != 3 {
		t.Fatalf("total %d, want 3 (1 + 2; the failed records' writes rolled back)", got)
	}
	// The failed event left no dedupe row: a retry applies it (here the
	// handler still fails, so nothing changes, and it is again Failed, not
	// Duplicate).
	res, err = a.ApplyBatch(ctx, b.db, recs[1:2])
	if err != nil || res[0].Outcome != consumers.Failed {
		t.Fatalf("retry: %+v, %v", res, err)
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	if consumers.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	err := consumers.Permanent(errBoom)
	if !consumers.IsPermanent(err) || !errors.Is(err, errBoom) {
		t.Errorf("Permanent(boom) = %v", err)
	}
	if consumers.IsPermanent(errBoom) {
		t.Error("a plain error is permanent")
	}
}

// BenchmarkApplyBatch: 1,000-record batches, a trivial handler updating one
// row per event (the shape of issue #5's target), b.N events in all.
func BenchmarkApplyBatch(b *testing.B) {
	bd := setupB(b)
	ctx := context.Background()
	order := uuid.NewString()
	if _, err := bd.db.Exec(ctx, `INSERT INTO totals VALUES ($1, 0)`, order); err != nil {
		b.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, 1000)
	a := consumers.NewApplier("bench", "", bd.serde, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
		_, err := tx.Exec(ctx, `UPDATE totals SET total = total + 1 WHERE order_id = $1`, order)
		return err
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		recs = append(recs, bd.recordB(b, uuid.NewString(), order, 1, int64(i)))
		if len(recs) == cap(recs) || i == b.N-1 {
			if _, err := a.ApplyBatch(ctx, bd.db, recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// A deadlock or serialization failure says nothing about the event: the
// whole batch is returned as an error (to be retried), no record is marked
// failed, and nothing of it is committed.
func TestApplyBatchRetriesConflicts(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	for _, code := range []string{"40P01", "40001"} {
		calls := 0
		a := consumers.NewApplier("g-"+code, "", b.serde, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
			calls++
			if calls == 2 {
				return &pgconn.PgError{Code: code, Message: "conflict"}
			}
			return nil
		})
		recs := []*kgo.Record{b.record(t, uuid.NewString(), uuid.NewString(), 1, 0), b.record(t, uuid.NewString(), uuid.NewString(), 1, 1)}
		res, err := a.ApplyBatch(ctx, b.db, recs)
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != code {
			t.Fatalf("%s: got results %v, err %v; want the conflict as the batch's error", code, res, err)
		}
		var n int
		if err := b.db.QueryRow(ctx, `SELECT count(*) FROM eventline_consumer_dedupe WHERE group_id = $1`, "g-"+code).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d dedupe rows committed (%v)", code, n, err)
		}
	}
}
