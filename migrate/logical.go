package migrate

// Setup of the logical mode: the publication and the replication slot the
// relay streams from, with the checks that turn a server that cannot do it
// into one clear sentence each.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is how eventline's functions reach PostgreSQL when they need no
// transaction of their own: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx
// (relay.Querier and eventlinetest.Querier are this type). SetupLogical
// must not be given a transaction: PostgreSQL creates a slot only outside
// one that wrote.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	// ErrNotLogical: the server's wal_level is not logical.
	ErrNotLogical = errors.New("wal_level is not logical")
	// ErrSlotInvalidated: PostgreSQL invalidated the replication slot
	// (wal_status lost), usually because it held more WAL than
	// max_slot_wal_keep_size; the events it had not delivered are gone
	// from the WAL.
	ErrSlotInvalidated = errors.New("replication slot invalidated")
	// ErrSlotLost: the slot eventline created is gone (dropped, or a
	// failover to a standby that does not have it).
	ErrSlotLost = errors.New("replication slot lost")
	// ErrNoReplicationPrivilege: the role may not use replication slots.
	ErrNoReplicationPrivilege = errors.New("role lacks the REPLICATION attribute")
)

// RecoveryDoc is where the recovery from a lost or invalidated slot is
// documented.
const RecoveryDoc = "docs/operations.md#logical-mode-slot-lost-or-invalidated"

// LogicalOptions of SetupLogical.
type LogicalOptions struct {
	// Schema of eventline's tables. Default "public".
	Schema string
	// Slot is the replication slot's name. Default SlotName(database,
	// schema).
	Slot string
	// RecreateSlot drops an invalidated slot, or replaces one that is gone,
	// and creates it anew. The events committed between the last position
	// the relay confirmed and the new slot are not delivered: Setup reports
	// that window. Default false: such a slot is an error.
	RecreateSlot bool
	// Emitters are the roles that may write events in logical mode: the
	// producers' roles and the relay's (its heartbeats). When set,
	// SetupLogical revokes EXECUTE on pg_logical_emit_message from PUBLIC
	// in this database and grants it to them, which needs a superuser (or
	// the function's owner). Other applications that write logical
	// decoding messages in this database must be listed too.
	Emitters []string
	// AllowPublicEmit accepts a database where PUBLIC may still execute
	// pg_logical_emit_message. Default false: SetupLogical returns
	// ErrPublicEmit there (any role that can connect could write events).
	AllowPublicEmit bool
}

// Logical is what SetupLogical found or made.
type Logical struct {
	Slot, Publication string
	// Created: the slot was created by this call.
	Created bool
	// LostFrom and LostTo bound the WAL whose events were never delivered,
	// when RecreateSlot replaced a lost or invalidated slot ("" otherwise):
	// the relay's last confirmed position, and the new slot's start.
	LostFrom, LostTo string
}

// SlotName is the default replication slot of the outbox in schema of
// database: slot names are unique in the whole cluster, so the database is
// part of it. Slot names allow only a-z, 0-9 and _ and 63 bytes; other
// names get a digest.
func SlotName(database, schema string) string {
	name := "eventline_" + database + "_" + schema
	if clean(name) && len(name) <= maxIdentifier {
		return name
	}
	sum := sha256.Sum256([]byte(database + "\x00" + schema))
	keep := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToLower(s) {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			}
			if b.Len() >= 16 {
				break
			}
		}
		return b.String()
	}
	return "eventline_" + keep(database) + "_" + keep(schema) + "_" + hex.EncodeToString(sum[:6])
}

func clean(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// LogicalNames resolves the slot and publication names of opts on the
// server q is connected to.
func LogicalNames(ctx context.Context, q Querier, opts LogicalOptions) (Logical, error) {
	var db string
	if err := q.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return Logical{}, fmt.Errorf("reading the database name: %w", err)
	}
	return names(db, opts), nil
}

func names(database string, opts LogicalOptions) Logical {
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	slot := opts.Slot
	if slot == "" {
		slot = SlotName(database, schema)
	}
	// A publication is per database: its name only needs the schema. It
	// is named in START_REPLICATION's publication_names, which pgoutput
	// folds to lower case and splits at commas: a name that is not plain
	// lower case gets a digest.
	pub := "eventline_" + schema
	if !clean(pub) || len(pub) > maxIdentifier {
		sum := sha256.Sum256([]byte(schema))
		pub = "eventline_" + hex.EncodeToString(sum[:16])
	}
	return Logical{Slot: slot, Publication: pub}
}

// SetupLogical prepares the logical mode of the outbox in opts.Schema (run
// Migrate first): it checks wal_level, creates the publication the relay
// names when it streams (empty: the events are logical decoding messages,
// not table rows) and the replication slot, and records the slot in
// eventline_relay_state. It is idempotent. The slot must exist before the
// first event is appended in logical mode: PostgreSQL decodes nothing
// written before a slot's creation.
//
// It needs a role with the REPLICATION attribute (or superuser) and CREATE
// on the database, the first time; a missing one is named in the error.
// It refuses (ErrPublicEmit) a database where every role may write logical
// decoding messages, unless opts.Emitters restricts that (a superuser's
// job, once) or opts.AllowPublicEmit accepts it.
func SetupLogical(ctx context.Context, q Querier, opts LogicalOptions) (Logical, error) {
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if err := ValidateSchema(schema); err != nil {
		return Logical{}, err
	}
	var level, db string
	if err := q.QueryRow(ctx, `SELECT current_setting('wal_level'), current_database()`).Scan(&level, &db); err != nil {
		return Logical{}, fmt.Errorf("reading wal_level: %w", err)
	}
	if level != "logical" {
		return Logical{}, fmt.Errorf("%w: the server runs with wal_level=%s; logical mode needs ALTER SYSTEM SET wal_level = logical and a restart of PostgreSQL (or use poll mode)", ErrNotLogical, level)
	}
	l := names(db, opts)
	if err := checkEmit(ctx, q, db, opts); err != nil {
		return Logical{}, err
	}
	if !clean(l.Slot) || len(l.Slot) > maxIdentifier {
		return Logical{}, fmt.Errorf("slot name %q: only a-z, 0-9 and _, at most 63 bytes", l.Slot)
	}
	var havePub bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, l.Publication).Scan(&havePub); err != nil {
		return Logical{}, fmt.Errorf("reading pg_publication: %w", err)
	}
	if !havePub {
		if _, err := q.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{l.Publication}.Sanitize()); err != nil && !isCode(err, "42710") {
			return Logical{}, fmt.Errorf("creating publication %s (needs CREATE on the database): %w", l.Publication, err)
		}
	}
	state := pgx.Identifier{schema, "eventline_relay_state"}.Sanitize()
	var status *string
	var slotDB *string
	err := q.QueryRow(ctx, `SELECT wal_status, database FROM pg_replication_slots WHERE slot_name = $1`, l.Slot).Scan(&status, &slotDB)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Logical{}, fmt.Errorf("reading pg_replication_slots: %w", err)
	}
	var confirmed *string
	recorded := true
	if err := q.QueryRow(ctx, `SELECT coalesce(confirmed_lsn, created_lsn)::text FROM `+state+` WHERE slot = $1`, l.Slot).Scan(&confirmed); errors.Is(err, pgx.ErrNoRows) {
		recorded = false
	} else if err != nil {
		if isCode(err, "42P01") {
			return Logical{}, fmt.Errorf("%s does not exist: run the migrations first (eventline migrate): %w", state, err)
		}
		return Logical{}, fmt.Errorf("reading %s: %w", state, err)
	}
	switch {
	case exists && slotDB != nil && *slotDB != db:
		return Logical{}, fmt.Errorf("replication slot %s belongs to database %s, not %s: name another slot", l.Slot, *slotDB, db)
	case exists && status != nil && *status == "lost":
		if !opts.RecreateSlot {
			return Logical{}, fmt.Errorf("%w: slot %s (wal_status lost; events after %s are no longer in the WAL): see %s", ErrSlotInvalidated, l.Slot, or(confirmed, "its creation"), RecoveryDoc)
		}
		if _, err := q.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, l.Slot); err != nil {
			return Logical{}, fmt.Errorf("dropping invalidated slot %s: %w", l.Slot, err)
		}
		exists = false
	case !exists && recorded && !opts.RecreateSlot:
		return Logical{}, fmt.Errorf("%w: slot %s was created for this outbox and is gone (dropped, or this server was promoted without it); events committed after %s were not delivered: see %s", ErrSlotLost, l.Slot, or(confirmed, "its creation"), RecoveryDoc)
	}
	if exists {
		if !recorded {
			// A slot made by hand (a PostgreSQL 17 failover slot, say):
			// recorded now, so that losing it later is an error, not a
			// silent new slot.
			if _, err := q.Exec(ctx, `INSERT INTO `+state+` (slot, created_lsn)
				SELECT slot_name, coalesce(confirmed_flush_lsn, restart_lsn, pg_current_wal_lsn()) FROM pg_replication_slots WHERE slot_name = $1
				ON CONFLICT (slot) DO NOTHING`, l.Slot); err != nil {
				return Logical{}, fmt.Errorf("recording slot %s in %s: %w", l.Slot, state, err)
			}
		}
		return l, nil
	}
	var lsn string
	if err := q.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, l.Slot).Scan(&lsn); err != nil {
		switch {
		case isCode(err, "42710"): // created concurrently
			return l, nil
		case isCode(err, "42501"):
			return Logical{}, fmt.Errorf("%w: creating replication slot %s needs a role with REPLICATION (ALTER ROLE … REPLICATION) or superuser: %w", ErrNoReplicationPrivilege, l.Slot, err)
		case isCode(err, "53400"):
			return Logical{}, fmt.Errorf("creating replication slot %s: all max_replication_slots are in use (raise it, restart PostgreSQL): %w", l.Slot, err)
		}
		return Logical{}, fmt.Errorf("creating replication slot %s: %w", l.Slot, err)
	}
	l.Created = true
	if recorded {
		l.LostFrom, l.LostTo = or(confirmed, ""), lsn
	}
	if _, err := q.Exec(ctx, `INSERT INTO `+state+` (slot, created_lsn) VALUES ($1, $2::pg_lsn)
		ON CONFLICT (slot) DO UPDATE SET created_lsn = EXCLUDED.created_lsn, created_at = clock_timestamp(), confirmed_lsn = NULL, confirmed_at = NULL`, l.Slot, lsn); err != nil {
		return Logical{}, fmt.Errorf("recording slot %s in %s: %w", l.Slot, state, err)
	}
	return l, nil
}

func or(s *string, dflt string) string {
	if s == nil || *s == "" {
		return dflt
	}
	return *s
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
