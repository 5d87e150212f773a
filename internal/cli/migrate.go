package cli

import (
	"github.com/eventline/eventline/internal/dsn"

	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/migrate"
)

func runMigrate(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "migrate", "[flags]")
	dbFlag := fs.String("database-url", "", databaseURLUsage)
	schema := fs.String("schema", envOr(env, "EVENTLINE_SCHEMA", migrate.DefaultSchema), "PostgreSQL schema of eventline's tables (env EVENTLINE_SCHEMA)")
	modeFlag := fs.String("mode", envOr(env, "EVENTLINE_MODE", string(migrate.ModePoll)), "the outbox's mode, as producers and relay use it: poll, or logical (also sets up the publication and the replication slot; needs wal_level=logical and a role with REPLICATION) (env EVENTLINE_MODE)")
	slot := fs.String("slot", env.Getenv("EVENTLINE_SLOT"), "logical mode's replication slot (env EVENTLINE_SLOT; default eventline_<database>_<schema>)")
	recreate := fs.Bool("recreate-slot", false, "replace an invalidated or lost slot with a new one; the events committed in between are NOT delivered (the window is printed): see docs/operations.md")
	emitters := fs.String("emitter-role", env.Getenv("EVENTLINE_EMITTER_ROLES"), "logical mode: the roles that may write events (the producers' and the relay's), comma-separated: EXECUTE on pg_logical_emit_message is revoked from PUBLIC in this database and granted to them (needs a superuser) (env EVENTLINE_EMITTER_ROLES)")
	allowPublicEmit := fs.Bool("allow-public-emit", false, "logical mode: accept a database where every role may still write logical decoding messages (any role could write events); see docs/operations.md")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	mode, err := migrate.ParseMode(*modeFlag)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline migrate: --mode:", err)
		return ExitUsage
	}
	dbURL, err := databaseURL(env, *dbFlag)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline migrate:", err)
		return ExitUsage
	}
	if dbURL == "" {
		fmt.Fprintln(env.Stderr, "eventline migrate: needs --database-url or DATABASE_URL")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		env.Logger.Error("connecting to postgres", "url", dsn.Redact(dbURL), "err", err)
		return ExitFail
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, err := migrate.Migrate(ctx, conn, migrate.Options{Schema: *schema})
	if err != nil {
		env.Logger.Error("migration failed", "schema", *schema, "err", err)
		return ExitFail
	}
	if len(applied) == 0 {
		fmt.Fprintf(env.Stdout, "schema %s is up to date\n", *schema)
	}
	for _, m := range applied {
		fmt.Fprintf(env.Stdout, "applied %03d_%s to schema %s\n", m.Version, m.Name, *schema)
	}
	if mode != migrate.ModeLogical {
		return ExitOK
	}
	l, err := migrate.SetupLogical(ctx, conn, migrate.LogicalOptions{Schema: *schema, Slot: *slot, RecreateSlot: *recreate,
		Emitters: splitList(*emitters), AllowPublicEmit: *allowPublicEmit})
	if err != nil {
		env.Logger.Error("logical mode setup failed", "schema", *schema, "err", err)
		return ExitFail
	}
	// Who may write events, as the server says after the setup.
	if a, err := migrate.ReadEmitAccess(ctx, conn); err != nil {
		env.Logger.Error("reading who may write events", "err", err)
		return ExitFail
	} else if a.Public {
		fmt.Fprintln(env.Stdout, "WARNING: every role may execute pg_logical_emit_message in this database: any role that can connect can write events the relay publishes (--allow-public-emit)")
	} else {
		fmt.Fprintf(env.Stdout, "pg_logical_emit_message: PUBLIC revoked; granted to %s (and superusers)\n", strings.Join(a.Roles, ", "))
	}
	switch {
	case l.LostFrom != "":
		fmt.Fprintf(env.Stdout, "recreated replication slot %s: events committed between %s and %s were NOT delivered\n", l.Slot, l.LostFrom, l.LostTo)
	case l.Created:
		fmt.Fprintf(env.Stdout, "created replication slot %s and publication %s\n", l.Slot, l.Publication)
	default:
		fmt.Fprintf(env.Stdout, "replication slot %s is in place\n", l.Slot)
	}
	return ExitOK
}
