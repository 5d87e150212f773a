package consumers

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Exactly-once effects: eventline_consumer_dedupe holds (group, event id)
// for every event a group applied, written in the transaction that holds
// the handler's effects. Group.expireDedupe deletes rows past
// Config.DedupeRetention.

// insertDedupe writes the dedupe rows of ids in one statement and returns
// the ids that were new (the others were applied before). ids are
// [16]byte, not uuid.UUID: pgx encodes raw bytes as uuid directly, while
// uuid.UUID goes through its string Valuer (a third of the consumer's CPU
// in `eventline bench consume`).
func (a *applier) insertDedupe(ctx context.Context, tx pgx.Tx, ids [][16]byte) (map[[16]byte]bool, error) {
	rows, err := tx.Query(ctx, `INSERT INTO `+a.dedupe+` (group_id, event_id) SELECT $1, id FROM unnest($2::uuid[]) AS id
		ON CONFLICT DO NOTHING RETURNING event_id`, a.group, ids)
	if err != nil {
		return nil, fmt.Errorf("error inserting dedupe rows: %w", err)
	}
	fresh, err := pgx.CollectRows(rows, pgx.RowTo[[16]byte])
	if err != nil {
		return nil, fmt.Errorf("error inserting dedupe rows: %w", err)
	}
	isNew := make(map[[16]byte]bool, len(fresh))
	for _, id := range fresh {
		isNew[id] = true
	}
	return isNew, nil
}
