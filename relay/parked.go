package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/migrate"
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

// Querier is what the parked-row tools need: a pool, a connection or a tx
// (migrate.Querier).
type Querier = migrate.Querier

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
//
// An event parked by logical mode (a negative id: minus its WAL position)
// is written again as a logical decoding message, in one statement with its
// removal from the parked table; it is published after whatever the stream
// has not reached yet.
func Requeue(ctx context.Context, db Querier, schema string, id int64) (bool, error) {
	if id < 0 {
		return requeueMessage(ctx, db, schemaOr(schema), id)
	}
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

func requeueMessage(ctx context.Context, db Querier, schema string, id int64) (bool, error) {
	park := pgx.Identifier{schema, "eventline_outbox_parked"}.Sanitize()
	rows, err := db.Query(ctx, `SELECT topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers::text FROM `+park+` WHERE id = $1`, id)
	if err != nil {
		return false, fmt.Errorf("error reading parked event %d: %w", id, err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (outboxmsg.Event, error) {
		var e outboxmsg.Event
		var h string
		err := row.Scan(&e.Topic, &e.Key, &e.Value, &e.EventID, &e.EventType, &e.AggregateType, &e.AggregateID, &e.AggregateVersion, &h)
		if err != nil {
			return e, err
		}
		e.Headers, err = outboxmsg.HeadersFromJSON([]byte(h))
		return e, err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("error reading parked event %d: %w", id, err)
	}
	// Written again only where a relay will read it: the parked row is the
	// event's only copy (after a switch back to poll mode, or with the slot
	// lost, the message would be decoded by no one).
	var decodable bool
	if err := db.QueryRow(ctx, `SELECT current_setting('wal_level') = 'logical' AND EXISTS (SELECT 1 FROM pg_replication_slots
		WHERE database = current_database() AND slot_type = 'logical' AND plugin = 'pgoutput'
		AND confirmed_flush_lsn IS NOT NULL AND wal_status IS DISTINCT FROM 'lost')`).Scan(&decodable); err != nil {
		return false, fmt.Errorf("error checking that parked event %d can be requeued: %w", id, err)
	}
	if !decodable {
		return false, fmt.Errorf("parked event %d was parked by a logical-mode relay and no usable replication slot is in this database (wal_level logical, a slot not invalidated): nothing was changed; set up logical mode (eventline migrate --mode logical) first", id)
	}
	var content []byte
	if e.Topic == "" { // parked because it could not be decoded: as it came
		if err := db.QueryRow(ctx, `SELECT record_value FROM `+park+` WHERE id = $1`, id).Scan(&content); err != nil {
			return false, fmt.Errorf("error reading parked event %d: %w", id, err)
		}
	} else if content, err = outboxmsg.Encode(&e); err != nil {
		return false, fmt.Errorf("error encoding parked event %d: %w", id, err)
	}
	tag, err := db.Exec(ctx, `WITH moved AS (DELETE FROM `+park+` WHERE id = $1 RETURNING id)
		SELECT pg_logical_emit_message(true, $2, $3::bytea) FROM moved`, id, outboxmsg.Prefix(schema), content)
	if err != nil {
		return false, fmt.Errorf("error requeueing parked event %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}
