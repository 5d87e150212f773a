package eventlinetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// RequireApplied fails tb unless consumer group group has applied the event
// eventID: its row is in the dedupe table of PostgreSQL schema ("" meaning
// "public"), written in the same transaction as the handler's effects. The
// message says which groups applied the event instead, if any.
func RequireApplied(ctx context.Context, tb testing.TB, q Querier, schema, group string, eventID uuid.UUID) {
	tb.Helper()
	tbl, applied, ok := readApplied(ctx, tb, q, schema, eventID)
	if !ok {
		return
	}
	if _, ok := appliedAt(applied, group); ok {
		return
	}
	n, err := count(ctx, q, `SELECT count(*) FROM `+tbl+` WHERE group_id = $1`, group)
	if err != nil {
		tb.Fatalf("eventlinetest: error reading %s: %v", tbl, err)
		return
	}
	others := "no group applied it"
	if len(applied) > 0 {
		var names []string
		for _, a := range applied {
			names = append(names, fmt.Sprintf("%q at %s", a.group, a.at.Format(time.RFC3339Nano)))
		}
		others = "applied by " + strings.Join(names, ", ")
	}
	tb.Fatalf("eventlinetest: event %s was not applied by group %q (in %s): %s; group %q applied %d other events",
		eventID, group, tbl, others, group, n)
}

// RequireNotApplied fails tb when consumer group group has applied the
// event eventID (see RequireApplied).
func RequireNotApplied(ctx context.Context, tb testing.TB, q Querier, schema, group string, eventID uuid.UUID) {
	tb.Helper()
	tbl, applied, ok := readApplied(ctx, tb, q, schema, eventID)
	if !ok {
		return
	}
	if at, ok := appliedAt(applied, group); ok {
		tb.Fatalf("eventlinetest: want event %s not applied by group %q, but %s records it applied at %s",
			eventID, group, tbl, at.Format(time.RFC3339Nano))
	}
}

// application is a dedupe row: group applied the event at at.
type application struct {
	group string
	at    time.Time
}

// readApplied returns schema's dedupe table and the groups that applied
// eventID in it; it fails tb (and returns false) when it cannot read them.
func readApplied(ctx context.Context, tb testing.TB, q Querier, schema string, eventID uuid.UUID) (string, []application, bool) {
	tb.Helper()
	tbl := table(schema, "eventline_consumer_dedupe")
	applied, err := appliedBy(ctx, q, tbl, eventID)
	if err != nil {
		tb.Fatalf("eventlinetest: %v", err)
		return tbl, nil, false
	}
	return tbl, applied, true
}

// appliedBy returns the groups that applied eventID, by group name.
func appliedBy(ctx context.Context, q Querier, tbl string, eventID uuid.UUID) ([]application, error) {
	rows, err := q.Query(ctx, `SELECT group_id, applied_at FROM `+tbl+` WHERE event_id = $1 ORDER BY group_id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", tbl, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (application, error) {
		var a application
		err := row.Scan(&a.group, &a.at)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", tbl, err)
	}
	return out, nil
}

func appliedAt(applied []application, group string) (time.Time, bool) {
	for _, a := range applied {
		if a.group == group {
			return a.at, true
		}
	}
	return time.Time{}, false
}
