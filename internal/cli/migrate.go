package cli

import (
	"github.com/eventline/eventline/internal/dsn"

	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/migrate"
)

func runMigrate(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "migrate", "[flags]")
	dbURL := fs.String("database-url", env.Getenv("DATABASE_URL"), "PostgreSQL connection string (env DATABASE_URL)")
	schema := fs.String("schema", envOr(env, "EVENTLINE_SCHEMA", migrate.DefaultSchema), "PostgreSQL schema of eventline's tables (env EVENTLINE_SCHEMA)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *dbURL == "" {
		fmt.Fprintln(env.Stderr, "eventline migrate: needs --database-url or DATABASE_URL")
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, *dbURL)
	if err != nil {
		env.Logger.Error("connecting to postgres", "url", dsn.Redact(*dbURL), "err", err)
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
		return ExitOK
	}
	for _, m := range applied {
		fmt.Fprintf(env.Stdout, "applied %03d_%s to schema %s\n", m.Version, m.Name, *schema)
	}
	return ExitOK
}
