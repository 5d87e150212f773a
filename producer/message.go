package producer

// Logical mode: each event is a transactional logical decoding message
// (pg_logical_emit_message), which PostgreSQL writes to the WAL only and
// hands to the relay's replication slot when the transaction commits, in
// commit order. No row, no index entry, nothing for the relay to delete or
// vacuum to clean: the writers' transactions write about half the WAL of
// a row insert (#13: 509 against 908 bytes per transaction).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/migrate"
)

// Mode is how Append writes events: the outbox's mode, shared with the
// relay (relay.Mode is the same type) and read from flags and
// EVENTLINE_MODE with migrate.ParseMode.
type Mode = migrate.Mode

const (
	// ModePoll inserts one eventline_outbox row per event; the relay's
	// poll mode drains the table. It works on any PostgreSQL with no
	// privilege beyond the table's.
	ModePoll = migrate.ModePoll
	// ModeLogical writes one transactional logical decoding message per
	// event; the relay's logical mode streams them from its replication
	// slot. It needs wal_level=logical and the slot, created by `eventline
	// migrate --mode logical` (migrate.SetupLogical) before the first
	// event: PostgreSQL decodes nothing written before a slot exists, so
	// Append fails while the slot is missing or lost rather than write
	// events no relay would see.
	ModeLogical = migrate.ModeLogical
)

// ErrNotDecodable: in logical mode the server would not hand what Append
// writes to any relay (wal_level is not logical, or the slot is missing or
// invalidated). Nothing was written.
var ErrNotDecodable = errors.New("events would not be decoded")

// recheck is how long a successful server check holds: a slot dropped
// meanwhile is found within it (and by the relay at once).
const recheck = 5 * time.Second

func (p *Producer) emit(ctx context.Context, tx pgx.Tx, rows []row) error {
	if err := p.checkDecodable(ctx, tx); err != nil {
		return err
	}
	contents := make([][]byte, len(rows))
	for i := range rows {
		r := &rows[i]
		hs := make([]outboxmsg.Header, len(r.pairs))
		for j, h := range r.pairs {
			hs[j] = outboxmsg.Header{Key: h[0], Value: h[1]}
		}
		b, err := outboxmsg.Encode(&outboxmsg.Event{
			Topic: r.topic, Key: r.key, Value: r.value, EventID: r.eventID, EventType: r.eventType,
			AggregateType: r.aggType, AggregateID: r.aggID, AggregateVersion: r.aggVersion, Headers: hs,
		})
		if err != nil {
			return fmt.Errorf("producer: encoding event %d of %d: %w", i+1, len(rows), err)
		}
		contents[i] = b
	}
	var err error
	if len(contents) == 1 {
		_, err = tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, $2::bytea)`, p.prefix, contents[0])
	} else {
		// A function scan yields the array in order, and the messages
		// are written in that order.
		_, err = tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, m) FROM unnest($2::bytea[]) AS m`, p.prefix, contents)
	}
	if err != nil {
		return fmt.Errorf("producer: error writing %d event messages: %w", len(contents), err)
	}
	return nil
}

// checkDecodable asks the server, at most every recheck, whether a relay
// will see the messages: wal_level and the slot. A slot still being created
// (waiting for open transactions, confirmed_flush_lsn not yet set) does not
// count: it would not decode what such a transaction writes.
func (p *Producer) checkDecodable(ctx context.Context, tx pgx.Tx) error {
	if last := p.checked.Load(); last != 0 && time.Since(time.Unix(0, last)) < recheck {
		return nil
	}
	var level, db string
	var slots, statuses []string
	err := tx.QueryRow(ctx, `SELECT current_setting('wal_level'), current_database(),
		coalesce(array_agg(slot_name::text) FILTER (WHERE slot_name IS NOT NULL), '{}'), coalesce(array_agg(coalesce(wal_status, '')) FILTER (WHERE slot_name IS NOT NULL), '{}')
		FROM (SELECT 1) one LEFT JOIN pg_replication_slots ON database = current_database() AND slot_type = 'logical'
			AND confirmed_flush_lsn IS NOT NULL`).Scan(&level, &db, &slots, &statuses)
	if err != nil {
		return fmt.Errorf("producer: checking that the server decodes events (logical mode): %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("producer: %w: wal_level is %s; logical mode needs wal_level=logical (or use ModePoll)", ErrNotDecodable, level)
	}
	slot := p.slot
	if slot == "" {
		slot = migrate.SlotName(db, p.schema)
	}
	for i, s := range slots {
		if s != slot {
			continue
		}
		if statuses[i] == "lost" {
			return fmt.Errorf("producer: %w: replication slot %s is invalidated (see %s)", ErrNotDecodable, slot, migrate.RecoveryDoc)
		}
		p.checked.Store(time.Now().UnixNano())
		return nil
	}
	return fmt.Errorf("producer: %w: replication slot %s does not exist in database %s; create it with `eventline migrate --mode logical` before appending", ErrNotDecodable, slot, db)
}
