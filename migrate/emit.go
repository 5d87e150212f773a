package migrate

// Who may write logical decoding messages. pg_logical_emit_message is
// executable by PUBLIC by default: any role that can connect to the
// database could write a message the logical-mode relay reads as an event.
// Logical mode therefore requires EXECUTE to be revoked from PUBLIC and
// granted to the producers' roles (and the relay's, for its heartbeats).
// Function privileges of pg_catalog are per database, like the slot.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrPublicEmit: every role of the database may execute
// pg_logical_emit_message (PostgreSQL's default), so any role that can
// connect could write events the logical-mode relay publishes.
// SetupLogical returns it unless LogicalOptions.Emitters restricted the
// function or AllowPublicEmit accepts the risk; the relay refuses to stream
// for the same reason (docs/operations.md, "Logical mode: who may emit").
var ErrPublicEmit = errors.New("every role may write logical decoding messages")

// ErrEmitNotGranted: the role may not execute pg_logical_emit_message
// (the relay needs it for its heartbeats).
var ErrEmitNotGranted = errors.New("role may not execute pg_logical_emit_message")

// EmitDoc is where the grants of logical mode are documented.
const EmitDoc = "docs/operations.md#logical-mode-who-may-emit"

// emitOverloads selects every overload of pg_logical_emit_message from
// pg_proc p (their arguments differ between versions: 17 added one).
const emitOverloads = `WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace`

// EmitAccess says who may execute pg_logical_emit_message in a database.
type EmitAccess struct {
	// Public: PUBLIC may execute some overload of it, that is every role.
	Public bool
	// Roles granted EXECUTE on every overload, sorted (superusers may
	// whatever the grants, and members of a role inherit its grant).
	Roles []string
}

// ReadEmitAccess reads the privileges of every overload of
// pg_logical_emit_message in the database q is connected to.
func ReadEmitAccess(ctx context.Context, q Querier) (EmitAccess, error) {
	var a EmitAccess
	var overloads int
	// acldefault: a NULL proacl means the default, EXECUTE for PUBLIC.
	// A role counts when it holds EXECUTE on every overload.
	err := q.QueryRow(ctx, `WITH f AS (
			SELECT p.oid, coalesce(p.proacl, acldefault('f', p.proowner)) AS acl FROM pg_proc p `+emitOverloads+`),
		g AS (SELECT f.oid, a.grantee FROM f, aclexplode(f.acl) a WHERE a.privilege_type = 'EXECUTE')
		SELECT (SELECT count(*) FROM f),
			EXISTS (SELECT 1 FROM g WHERE grantee = 0),
			coalesce((SELECT array_agg(r.rolname ORDER BY r.rolname) FROM pg_roles r
				WHERE (SELECT count(DISTINCT g.oid) FROM g WHERE g.grantee = r.oid) = (SELECT count(*) FROM f)), '{}')`).Scan(&overloads, &a.Public, &a.Roles)
	if err != nil {
		return EmitAccess{}, fmt.Errorf("reading the privileges of pg_logical_emit_message: %w", err)
	}
	if overloads == 0 {
		return EmitAccess{}, errors.New("pg_logical_emit_message does not exist on this server (PostgreSQL 9.6 or later has it)")
	}
	return a, nil
}

// CanEmit reports whether the role q is connected as may execute every
// overload of pg_logical_emit_message (their arguments differ between
// PostgreSQL versions: 17 added one).
func CanEmit(ctx context.Context, q Querier) (bool, error) {
	var ok *bool
	if err := q.QueryRow(ctx, `SELECT bool_and(has_function_privilege(p.oid, 'EXECUTE')) FROM pg_proc p `+emitOverloads).Scan(&ok); err != nil {
		return false, fmt.Errorf("reading the privileges of pg_logical_emit_message: %w", err)
	}
	return ok != nil && *ok, nil
}

// restrictEmit revokes EXECUTE on every overload of pg_logical_emit_message
// from PUBLIC and grants it to roles, in one transaction. A role that may
// not change the function's privileges gets only a warning from
// PostgreSQL: the caller reads the result back.
func restrictEmit(ctx context.Context, q Querier, roles []string) error {
	if len(roles) == 0 {
		return nil
	}
	grantees := make([]string, len(roles))
	for i, r := range roles {
		grantees[i] = pgx.Identifier{r}.Sanitize()
	}
	var missing []string
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(r), '{}') FROM unnest($1::text[]) AS r
		WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)`, roles).Scan(&missing); err != nil {
		return fmt.Errorf("reading pg_roles: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("emitter roles %q do not exist: create them first (CREATE ROLE … LOGIN)", missing)
	}
	var overloads []string
	if err := q.QueryRow(ctx, `SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid) FROM pg_proc p `+emitOverloads).Scan(&overloads); err != nil {
		return fmt.Errorf("reading pg_proc: %w", err)
	}
	// Every overload (PostgreSQL 17 added a flush argument) in two
	// statements of one simple query: PostgreSQL runs them as one
	// transaction, so producers never lose the function half-way.
	fns := "pg_catalog." + strings.Join(overloads, ", pg_catalog.")
	stmt := "REVOKE EXECUTE ON FUNCTION " + fns + " FROM PUBLIC; GRANT EXECUTE ON FUNCTION " + fns + " TO " + strings.Join(grantees, ", ")
	if _, err := q.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("restricting pg_logical_emit_message to %q (needs a superuser or the function's owner): %w", roles, err)
	}
	return nil
}

// checkEmit applies opts' emitter settings (only when the grants differ:
// a role that may not change them passes when nothing needs changing) and
// verifies the result.
func checkEmit(ctx context.Context, q Querier, db string, opts LogicalOptions) error {
	a, err := ReadEmitAccess(ctx, q)
	if err != nil {
		return err
	}
	missing := func() []string {
		var out []string
		for _, r := range opts.Emitters {
			if !slices.Contains(a.Roles, r) {
				out = append(out, r)
			}
		}
		return out
	}
	if len(opts.Emitters) > 0 && (a.Public || len(missing()) > 0) {
		if err := restrictEmit(ctx, q, opts.Emitters); err != nil {
			return err
		}
		if a, err = ReadEmitAccess(ctx, q); err != nil {
			return err
		}
		if a.Public || len(missing()) > 0 {
			return fmt.Errorf("%w: restricting pg_logical_emit_message in database %s had no effect (PostgreSQL only warns when the role may not change a function's privileges): run it as a superuser, or see %s", ErrPublicEmit, db, EmitDoc)
		}
	}
	if a.Public && !opts.AllowPublicEmit {
		return fmt.Errorf("%w: in database %s PUBLIC may execute pg_logical_emit_message, so any role that can connect could write events the relay publishes; run `eventline migrate --mode logical --emitter-role <producer role> --emitter-role <relay role>` as a superuser, or see %s", ErrPublicEmit, db, EmitDoc)
	}
	return nil
}
