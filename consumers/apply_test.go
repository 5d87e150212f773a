package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

type bundle struct {
	db    *pgxpool.Pool
	serde *schemas.Serde
	id    int // schema id of TicketOpened
}

func setup(t *testing.T) *bundle { return setupB(t) }

func setupB(t testing.TB) *bundle {
	t.Helper()
	f := testkit.Setup(t)
	if _, err := f.DB.Exec(context.Background(), `CREATE TABLE totals (ticket_id uuid PRIMARY KEY, total bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	return &bundle{db: f.DB, serde: f.Serde, id: f.RegisterEvent(t, "tickets-"+info.Name, testevents.Catalog(), info.Name)}
}

func (b *bundle) record(t *testing.T, eventID string, ticketID string, total int64, offset int64) *kgo.Record {
	return b.recordB(t, eventID, ticketID, total, offset)
}

func (b *bundle) recordB(t testing.TB, eventID string, ticketID string, total int64, offset int64) *kgo.Record {
	t.Helper()
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	v, err := schemas.Encode(b.id, info.Schema, &testevents.TicketOpened{TicketID: ticketID, RequesterID: ticketID, Attachments: []testevents.Attachment{}, EstimateMinutes: total, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: "tickets", Partition: 0, Offset: offset, Key: []byte(ticketID), Value: v, Headers: []kgo.RecordHeader{
		{Key: "eventline-event-id", Value: []byte(eventID)},
		{Key: "eventline-event-type", Value: []byte(info.Name)},
		{Key: "eventline-aggregate-type", Value: []byte("ticket")},
		{Key: "eventline-aggregate-id", Value: []byte(ticketID)},
		{Key: "eventline-aggregate-version", Value: []byte("1")},
	}}
}

var errBoom = errors.New("boom")

// The handler adds the ticket's estimate to a running sum; it fails for
// estimates of 13 and panics for 666.
func handler(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
	o := ev.Payload.(*testevents.TicketOpened)
	if _, err := tx.Exec(ctx, `INSERT INTO totals VALUES ($1, $2) ON CONFLICT (ticket_id) DO UPDATE SET total = totals.total + EXCLUDED.total`, o.TicketID, o.EstimateMinutes); err != nil {
		return err
	}
	switch o.EstimateMinutes {
	case 13:
		return errBoom // after a write: the savepoint must undo it
	case 666:
		panic("handler bug")
	}
	return nil
}

func (b *bundle) total(t *testing.T, ticketID string) int64 {
	var n int64
	err := b.db.QueryRow(context.Background(), `SELECT coalesce(sum(total), 0) FROM totals WHERE ticket_id = $1`, ticketID).Scan(&n)
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
	ticket := uuid.NewString()
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, b.record(t, uuid.NewString(), ticket, 100, int64(i)))
	}
	recs = append(recs, recs[3]) // a duplicate inside the batch
	a := consumers.NewApplier("g1", "", b.serde, handler).WithEvents(testevents.All()...)
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
	if got := b.total(t, ticket); got != 1000 {
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
	if got := b.total(t, ticket); got != 1000 {
		t.Fatalf("total after re-apply %d, want 1000", got)
	}
	// Another group applies the same events independently.
	other := consumers.NewApplier("g2", "", b.serde, handler).WithEvents(testevents.All()...)
	if _, err := other.ApplyBatch(ctx, b.db, recs[:1]); err != nil {
		t.Fatal(err)
	}
	if got := b.total(t, ticket); got != 1100 {
		t.Fatalf("total after group g2 %d, want 1100", got)
	}
}

// A failing record is rolled back to its savepoint (its write and its
// dedupe row), the others commit; a later retry of it applies it.
func TestApplyBatchIsolatesFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ticket := uuid.NewString()
	failID := uuid.NewString()
	recs := []*kgo.Record{
		b.record(t, uuid.NewString(), ticket, 1, 0),
		b.record(t, failID, ticket, 13, 1),
		b.record(t, uuid.NewString(), ticket, 666, 2),
		{Topic: "tickets", Offset: 3, Value: []byte("garbage"), Headers: []kgo.RecordHeader{{Key: "eventline-event-id", Value: []byte(uuid.NewString())}, {Key: "eventline-event-type", Value: []byte("helpdesk.tickets.TicketOpened")}}},
		b.record(t, "forged", ticket, 1, 4),
		b.record(t, uuid.NewString(), ticket, 2, 5),
	}
	a := consumers.NewApplier("g", "", b.serde, handler).WithEvents(testevents.All()...)
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
		t.Errorf("record with a forged event id: %v", res[4].Err)
	}
	if got := b.total(t, ticket); got != 3 {
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
	ticket := uuid.NewString()
	if _, err := bd.db.Exec(ctx, `INSERT INTO totals VALUES ($1, 0)`, ticket); err != nil {
		b.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, 1000)
	a := consumers.NewApplier("bench", "", bd.serde, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
		_, err := tx.Exec(ctx, `UPDATE totals SET total = total + 1 WHERE ticket_id = $1`, ticket)
		return err
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		recs = append(recs, bd.recordB(b, uuid.NewString(), ticket, 1, int64(i)))
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

// A failing batch handler is isolated by bisection: exactly the failing
// events fail (their writes undone), all others apply, with far fewer
// handler calls than one per event.
func TestApplyBatchBisectsBatchHandlerFailures(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	calls := 0
	a := consumers.NewApplier("g", "", b.serde, nil).WithEvents(testevents.All()...).WithBatchHandler(func(ctx context.Context, tx pgx.Tx, evs []*consumers.Event) error {
		calls++
		for _, ev := range evs {
			if err := handler(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	var recs []*kgo.Record
	failing := map[int]bool{7: true, 31: true, 32: true, 60: true, 99: true}
	for i := range 100 {
		total := int64(1)
		if failing[i] {
			total = 13
		}
		recs = append(recs, b.record(t, uuid.NewString(), uuid.NewString(), total, int64(i)))
	}
	res, err := a.ApplyBatch(ctx, b.db, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := consumers.Applied
		if failing[i] {
			want = consumers.Failed
		}
		if r.Outcome != want {
			t.Errorf("record %d: %v, want %v", i, r.Outcome, want)
		}
		ticketID := string(r.Record.Key)
		if got, wantTotal := b.total(t, ticketID), map[bool]int64{true: 0, false: 1}[failing[i]]; got != wantTotal {
			t.Errorf("record %d: total %d, want %d", i, got, wantTotal)
		}
	}
	if calls > 60 {
		t.Errorf("%d batch handler calls to isolate 5 failures among 100", calls)
	}
	t.Logf("%d batch handler calls", calls)
}

// Key order inside one retry batch: a follower of key K whose head is
// further down the chain is deferred on the fast path; when another event
// of the batch fails and the batch falls back to the slow path, the
// follower must stay in the chain, so that nothing newer of K can
// overtake it.
func TestApplyBatchKeepsFollowersInChain(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	key := uuid.NewString()
	a := consumers.NewApplier("g", "", b.serde, handler).WithEvents(testevents.All()...).WithKeyOrder(true)
	retryCopy := func(key string, origOffset, offset int64, total int64) *kgo.Record {
		r := b.record(t, uuid.NewString(), key, total, offset)
		r.Topic = consumers.RetryTopic("tickets", "g", 1)
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: headers.OriginalTopic, Value: []byte("tickets")},
			kgo.RecordHeader{Key: headers.OriginalPartition, Value: []byte("0")},
			kgo.RecordHeader{Key: headers.OriginalOffset, Value: fmt.Appendf(nil, "%d", origOffset)},
			kgo.RecordHeader{Key: headers.Attempt, Value: []byte("1")})
		return r
	}
	// K's head (source offset 0) is on retry.2 by now; its follower (2) is here.
	if _, err := b.db.Exec(ctx, `INSERT INTO eventline_consumer_chain (group_id, topic, partition, key, source_offset) VALUES ('g', 'tickets', 0, $1, 0), ('g', 'tickets', 0, $1, 2)`, []byte(key)); err != nil {
		t.Fatal(err)
	}
	res, err := a.ApplyBatch(ctx, b.db, []*kgo.Record{retryCopy(key, 2, 0, 1), retryCopy(uuid.NewString(), 3, 1, 13)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Outcome != consumers.Deferred || res[1].Outcome != consumers.Failed {
		t.Fatalf("outcomes %v, %v; want deferred, failed", res[0].Outcome, res[1].Outcome)
	}
	rows, _ := b.db.Query(ctx, `SELECT source_offset FROM eventline_consumer_chain WHERE key = $1 ORDER BY 1`, []byte(key))
	offsets, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || fmt.Sprint(offsets) != "[0 2]" {
		t.Fatalf("chain rows of K %v (%v), want [0 2]", offsets, err)
	}
}

// hook.ApplyRecord, what eventlinetest runs a team's handler with: in the
// caller's transaction (a savepoint), the typed payload reaches the
// handler, its effects are visible in that transaction, a second delivery
// is a duplicate, and rolling the transaction back leaves nothing.
func TestApplyHookInCallersTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ticket := uuid.NewString()
	rec := b.record(t, uuid.NewString(), ticket, 42, 0)
	tx, err := b.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	cfg := consumers.Config{Group: "g", Serde: b.serde, Handler: handler, Events: testevents.All()}
	for i, want := range []hook.Outcome{hook.Applied, hook.Duplicate} {
		res, err := hook.ApplyRecord(ctx, tx, cfg, rec)
		if err != nil || res.Outcome != want || res.Failure != nil {
			t.Fatalf("delivery %d: %+v, %v; want %s", i+1, res, err, want)
		}
	}
	var total int64
	if err := tx.QueryRow(ctx, `SELECT total FROM totals WHERE ticket_id = $1`, ticket).Scan(&total); err != nil || total != 42 {
		t.Fatalf("in the transaction: total %d, %v; want 42", total, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.total(t, ticket); got != 0 {
		t.Errorf("after rollback: total %d, want 0", got)
	}
	if _, err := hook.ApplyRecord(ctx, tx, "not a Config", rec); err == nil {
		t.Error("hook.ApplyRecord took a config that is not one")
	}
}
