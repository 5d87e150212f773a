package relay

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/testkit"
)

// The probe is answered from the primary key's index even in the generic
// plan PostgreSQL switches a prepared statement to after a few runs, with
// the outbox's heap full of rows deleted since vacuum (after a large drain):
// a heap scan there walks every dead row, 110-170 ms per probe after a
// million. Both modes of the table (delete, retention) are checked.
func TestProbePlansUseTheIndex(t *testing.T) {
	t.Parallel()
	f := testkit.Setup(t)
	ctx := context.Background()
	if _, err := f.DB.Exec(ctx, `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		SELECT 't', 'k', '\x00', gen_random_uuid(), 'T', 'a', 'k' FROM generate_series(1, 20000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.Exec(ctx, `ANALYZE eventline_outbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.Exec(ctx, `DELETE FROM eventline_outbox`); err != nil {
		t.Fatal(err)
	}
	conn, err := f.DB.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(ctx, `RESET plan_cache_mode`) }()
	for _, retention := range []bool{false, true} {
		r := &Relay{table: pgx.Identifier{"public", "eventline_outbox"}.Sanitize()}
		if retention {
			r.cfg.Retention = 1
		}
		if _, err := conn.Exec(ctx, `DEALLOCATE ALL`); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `PREPARE probe(bigint, bigint[]) AS `+r.probeSQL()); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE probe(20000, '{19990}')`, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("retention %v: the probe's generic plan scans the heap:\n%s", retention, plan)
		}
	}
}
