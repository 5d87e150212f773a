// Package migrate creates and upgrades eventline's tables from SQL embedded
// in the binary: eventline_outbox (the events of poll mode),
// eventline_outbox_parked (events the relay could not publish),
// eventline_consumer_dedupe (a consumer group's applied event ids),
// eventline_consumer_chain (a group's keys in its retry chain, for
// key order) and eventline_relay_state (logical mode's slot and confirmed
// position). `eventline migrate` runs it; services may call Migrate at
// startup instead. Every name is prefixed eventline_ and lives in a
// configurable PostgreSQL schema; re-running is a no-op.
//
// It also holds what producers and relay share about an outbox: its Mode
// (poll or logical, ParseMode), logical mode's setup (SetupLogical: the
// publication, the slot, who may emit) and ErrNotMigrated.
package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/jackc/pgx/v5"
)

//go:embed sql/*.sql
var sqlFS embed.FS

// ErrNotMigrated: eventline's tables are not in the database and schema a
// component was given (the migrations have not run there, or the schema is
// wrong). producer.New and consumers.Group.Run return it at start, naming
// the schema and the command to run.
var ErrNotMigrated = errors.New("eventline's tables are missing")

// DefaultSchema is the PostgreSQL schema used when Options.Schema is empty.
const DefaultSchema = "public"

// Options of a migration run.
type Options struct {
	// Schema is the PostgreSQL schema (namespace) of the tables; created
	// when missing. Default "public".
	Schema string
}

func (o Options) schema() string {
	if o.Schema == "" {
		return DefaultSchema
	}
	return o.Schema
}

// Migration is one numbered step.
type Migration struct {
	Version int
	Name    string
	sql     string
}

// Migrations lists the embedded migrations in order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(sqlFS, "sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s is not named NNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(sqlFS, path.Join("sql", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// channel is the LISTEN/NOTIFY channel on which the outbox trigger of
// migration 001 announced commits: "eventline_outbox.<schema>", or, when
// that exceeds PostgreSQL's 63-byte limit on channel names, the prefix and
// a digest of the schema name. Migration 005 drops the trigger (the relay
// probes the outbox instead): the name is needed only to replay migration
// 001 as it was.
func channel(schema string) string {
	if schema == "" || schema == DefaultSchema {
		return "eventline_outbox"
	}
	if c := "eventline_outbox." + schema; len(c) <= maxIdentifier {
		return c
	}
	sum := sha256.Sum256([]byte(schema))
	return "eventline_outbox." + hex.EncodeToString(sum[:16])
}

// maxIdentifier is PostgreSQL's limit on identifiers and channel names, in
// bytes (NAMEDATALEN - 1); longer ones are truncated or refused.
const maxIdentifier = 63

// ValidateSchema checks that name can be used as the PostgreSQL schema of
// eventline's tables: not empty, at most 63 bytes (PostgreSQL would
// truncate a longer one, silently naming another schema), no NUL. Any
// other character is fine: the name is always quoted.
func ValidateSchema(name string) error {
	switch {
	case name == "":
		return errors.New("schema name is empty")
	case len(name) > maxIdentifier:
		return fmt.Errorf("schema name %.20q… is %d bytes; PostgreSQL allows at most %d", name, len(name), maxIdentifier)
	case strings.ContainsRune(name, 0):
		return errors.New("schema name contains a NUL byte")
	}
	return nil
}

// Beginner is what Migrate needs of a connection or pool.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migrate applies the pending migrations in one transaction and returns
// those it applied (none when up to date).
func Migrate(ctx context.Context, db Beginner, opts Options) ([]Migration, error) {
	return migrate(ctx, db, opts, 0)
}

// migrate is Migrate up to version upTo (0: all).
func migrate(ctx context.Context, db Beginner, opts Options, upTo int) ([]Migration, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("error beginning migration transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	applied, err := migrateTx(ctx, tx, opts, upTo)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("error committing migrations: %w", err)
	}
	return applied, nil
}

// MigrateTx is Migrate inside the caller's transaction.
func MigrateTx(ctx context.Context, tx pgx.Tx, opts Options) ([]Migration, error) {
	return migrateTx(ctx, tx, opts, 0)
}

// migrateTx applies the pending migrations up to version upTo (0: all):
// tests upgrade a schema left at an older version.
func migrateTx(ctx context.Context, tx pgx.Tx, opts Options, upTo int) ([]Migration, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	if upTo > 0 {
		all = slices.DeleteFunc(all, func(m Migration) bool { return m.Version > upTo })
	}
	schema := opts.schema()
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	ident := pgx.Identifier{schema}.Sanitize()
	// Concurrent migrators (several replicas starting at once) queue here.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('eventline_migrate:' || $1))`, schema); err != nil {
		return nil, fmt.Errorf("error taking the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident); err != nil {
		return nil, fmt.Errorf("error creating schema %s: %w", schema, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+`.eventline_migrations (
		version    int PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("error creating the migrations table: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM `+ident+`.eventline_migrations`)
	if err != nil {
		return nil, fmt.Errorf("error reading applied migrations: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("error reading applied migrations: %w", err)
	}
	have := map[int]bool{}
	for _, v := range done {
		have[v] = true
	}
	if n := len(all); n > 0 {
		for _, v := range done {
			if v > all[n-1].Version {
				return nil, fmt.Errorf("%w: schema %s is at version %d, this binary knows up to %d", ErrNewerSchema, schema, v, all[n-1].Version)
			}
		}
	}
	data := map[string]string{"Schema": ident, "Channel": quoteLiteral(channel(schema)), "OutboxIDs": quoteLiteral(ident + ".eventline_outbox_ids")}
	var applied []Migration
	for _, m := range all {
		if have[m.Version] {
			continue
		}
		t, err := template.New(m.Name).Option("missingkey=error").Parse(m.sql)
		if err != nil {
			return nil, fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
		}
		var sql bytes.Buffer
		if err := t.Execute(&sql, data); err != nil {
			return nil, fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, sql.String()); err != nil {
			return nil, fmt.Errorf("error applying migration %03d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+ident+`.eventline_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("error recording migration %03d: %w", m.Version, err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}

// ErrNewerSchema: the database was migrated by a newer eventline.
var ErrNewerSchema = errors.New("database schema is newer than this eventline")

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
