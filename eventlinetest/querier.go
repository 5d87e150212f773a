package eventlinetest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/migrate"
)

// Querier is what the Require helpers read through: a pgx.Tx (to see what
// the transaction appended before it commits), a *pgx.Conn or a
// *pgxpool.Pool (committed rows only). It is migrate.Querier.
type Querier = migrate.Querier

var (
	_ Querier = pgx.Tx(nil)
	_ Querier = (*pgx.Conn)(nil)
	_ Querier = (*pgxpool.Pool)(nil)
)

// table is the quoted name of one of eventline's tables in schema (""
// meaning migrate.DefaultSchema).
func table(schema, name string) string {
	if schema == "" {
		schema = migrate.DefaultSchema
	}
	return pgx.Identifier{schema, name}.Sanitize()
}

// count returns the number of rows of query.
func count(ctx context.Context, q Querier, query string, args ...any) (int64, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("error counting rows: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("error counting rows: %w", err)
	}
	return n, nil
}
