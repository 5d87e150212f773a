package relay

import (
	"context"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/testkit"
)

// While rows flow, reads start above a floor of ids no transaction can
// still commit at. The floor never passes an id whose transaction is open
// (it would skip that row when it commits), passes it once it commits, and
// is dropped while the parked table holds a row (Requeue puts a row back
// under its old id).
func TestFloorStaysBelowOpenTransactions(t *testing.T) {
	t.Parallel()
	r, f, _, topic := runInternal(t, testkit.Logger(t), time.Hour, nil)
	ctx := context.Background()

	const insert = `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ($1, 'k', '\x000000000100', gen_random_uuid(), 'T', 'a', 'k') RETURNING id`
	var last int64
	one := func() {
		t.Helper()
		if err := f.DB.QueryRow(ctx, insert, topic).Scan(&last); err != nil {
			t.Fatal(err)
		}
	}
	// flow appends a row at a time until cond holds (each read is the
	// relay's chance to check and move its floor).
	flow := func(what string, cond func() bool) {
		t.Helper()
		testkit.WaitFor(t, 30*time.Second, what, func() bool { one(); return cond() })
	}
	flow("a floor while rows flow", func() bool { return r.floor.current() > 0 })

	held, err := f.DB.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Rollback(ctx) }()
	var heldID int64
	if err := held.QueryRow(ctx, insert, topic).Scan(&heldID); err != nil {
		t.Fatal(err)
	}
	// Rows flow past the open transaction's id: they are published, and
	// the floor rises to just below it, never above.
	start := r.Stats().Published
	flow("rows past the open transaction published", func() bool { return r.Stats().Published >= start+50 })
	if at := r.floor.current(); at >= heldID {
		t.Fatalf("floor %d passed id %d of a transaction still open", at, heldID)
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	flow("the floor past the committed row", func() bool { return r.floor.current() > heldID })
	// The floor moves when the row is read, before Kafka acknowledges it:
	// the row must then be published and deleted (a skipped row would stay,
	// with no read from the lowest id for an hour).
	testkit.WaitFor(t, 30*time.Second, "the late row published", func() bool {
		var left bool
		err := f.DB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM eventline_outbox WHERE id = $1)`, heldID).Scan(&left)
		return err == nil && !left
	})

	// A parked row: the floor is dropped and stays dropped while it is there.
	if _, err := f.DB.Exec(ctx, `INSERT INTO eventline_outbox_parked (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, headers, created_at, error)
		VALUES (1, $1, 'k', '\x00', gen_random_uuid(), 'T', 'a', 'k', '[]', now(), 'test')`, topic); err != nil {
		t.Fatal(err)
	}
	flow("the floor dropped for the parked row", func() bool { return r.floor.current() == 0 })
	start = r.Stats().Published
	flow("rows published while a row is parked", func() bool { return r.Stats().Published >= start+50 })
	if at := r.floor.current(); at != 0 {
		t.Fatalf("floor %d while the parked table holds a row", at)
	}
}
