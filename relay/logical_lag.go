package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/migrate"
)

// SlotLag is how far logical mode's replication slot trails the server.
type SlotLag struct {
	Slot string
	// Bytes is the WAL written since the slot's confirmed position: what a
	// relay still has to read (pg_current_wal_lsn - confirmed_flush_lsn).
	Bytes int64
	// Retained is the WAL the server keeps for the slot (from its
	// restart_lsn, which trails the confirmed position).
	Retained int64
	// SafeBytes is how much more WAL the slot may hold before PostgreSQL
	// invalidates it (safe_wal_size), -1 when max_slot_wal_keep_size is
	// unlimited.
	SafeBytes int64
	// Age is how long the oldest event not yet confirmed has been
	// committed, as the leader sees it (0 when it is caught up); with no
	// relay streaming, the time since a relay last confirmed a position.
	Age time.Duration
	// Active: a walsender streams from the slot.
	Active bool
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved or lost.
	WALStatus string
}

// SlotLag reads the lag of logical mode's slot from pg_replication_slots
// (any relay, leader or standby, can ask). It fails with ErrSlotLost when
// the slot does not exist.
func (r *Relay) SlotLag(ctx context.Context) (SlotLag, error) {
	slot := r.cfg.Slot
	if p := r.slot.Load(); p != nil {
		slot = *p
	}
	if slot == "" {
		l, err := migrate.LogicalNames(ctx, r.pool, migrate.LogicalOptions{Schema: r.cfg.Schema, Slot: r.cfg.Slot})
		if err != nil {
			return SlotLag{}, err
		}
		slot = l.Slot
	}
	lag := SlotLag{Slot: slot}
	var status *string
	var safe *int64
	var since *float64
	err := r.pool.QueryRow(ctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint, s.safe_wal_size, s.active, s.wal_status,
			extract(epoch FROM clock_timestamp() - st.confirmed_at)::float8
		FROM pg_replication_slots s LEFT JOIN `+r.state+` st ON st.slot = s.slot_name
		WHERE s.slot_name = $1`, slot).Scan(&lag.Bytes, &lag.Retained, &safe, &lag.Active, &status, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return lag, fmt.Errorf("%w: slot %s does not exist", ErrSlotLost, slot)
	}
	if err != nil {
		return lag, fmt.Errorf("reading slot %s: %w", slot, err)
	}
	lag.SafeBytes = -1
	if safe != nil {
		lag.SafeBytes = *safe
	}
	if status != nil {
		lag.WALStatus = *status
	}
	if c := r.confirmer.Load(); c != nil {
		if _, _, _, oldest := c.state(); !oldest.IsZero() {
			lag.Age = time.Since(oldest)
		}
	} else if since != nil && lag.Bytes > 0 {
		lag.Age = time.Duration(*since * float64(time.Second))
	}
	return lag, nil
}
