package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Parked is a row the relay could not publish.
type Parked struct {
	ID        int64     `json:"id"`
	Topic     string    `json:"topic"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Aggregate string    `json:"aggregate"` // type/id
	Size      int       `json:"value_bytes"`
	CreatedAt time.Time `json:"created_at"`
	ParkedAt  time.Time `json:"parked_at"`
	Error     string    `json:"error"`
}

// Querier is what the parked-row tools need: a pool, a connection or a tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ListParked returns the parked rows of schema, oldest first.
func ListParked(ctx context.Context, db Querier, schema string) ([]Parked, error) {
	rows, err := db.Query(ctx, `SELECT id, topic, event_id::text, event_type, aggregate_type || '/' || aggregate_id, length(record_value), created_at, parked_at, error
		FROM `+pgx.Identifier{schemaOr(schema), "eventline_outbox_parked"}.Sanitize()+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("error listing parked rows: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Parked, error) {
		var p Parked
		err := row.Scan(&p.ID, &p.Topic, &p.EventID, &p.EventType, &p.Aggregate, &p.Size, &p.CreatedAt, &p.ParkedAt, &p.Error)
		return p, err
	})
}

// Requeue moves a parked row back into the outbox under its original id, so
// it is published before any later row of its aggregate still waiting. It
// reports false when no parked row has that id.
func Requeue(ctx context.Context, db Querier, schema string, id int64) (bool, error) {
	out := pgx.Identifier{schemaOr(schema), "eventline_outbox"}.Sanitize()
	park := pgx.Identifier{schemaOr(schema), "eventline_outbox_parked"}.Sanitize()
	tag, err := db.Exec(ctx, `WITH moved AS (DELETE FROM `+park+` WHERE id = $1 RETURNING *)
		INSERT INTO `+out+`
			(id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at)
		OVERRIDING SYSTEM VALUE
		SELECT id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at FROM moved`, id)
	if err != nil {
		return false, fmt.Errorf("error requeueing parked row %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

func schemaOr(s string) string {
	if s == "" {
		return "public"
	}
	return s
}
