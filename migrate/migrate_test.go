package migrate_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func pool(t *testing.T) *pgxpool.Pool {
	return poolFor(t, testkit.Postgres(t))
}

func poolFor(t *testing.T, url string) *pgxpool.Pool {
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestMigrateIdempotentAndRecorded(t *testing.T) {
	t.Parallel()
	db := pool(t)
	ctx := context.Background()
	all, err := migrate.Migrations()
	if err != nil || len(all) < 2 {
		t.Fatalf("migrations: %v, %v", all, err)
	}
	applied, err := migrate.Migrate(ctx, db, migrate.Options{Schema: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(all) {
		t.Fatalf("applied %d of %d", len(applied), len(all))
	}
	again, err := migrate.Migrate(ctx, db, migrate.Options{Schema: "shop"})
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, %v; want nothing", again, err)
	}
	var versions []int
	rows, _ := db.Query(ctx, `SELECT version FROM shop.eventline_migrations ORDER BY version`)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(versions) != len(all) || versions[0] != 1 {
		t.Fatalf("recorded versions %v, %v", versions, err)
	}
	for _, table := range []string{"eventline_outbox", "eventline_outbox_parked", "eventline_consumer_dedupe"} {
		var ok bool
		if err := db.QueryRow(ctx, `SELECT to_regclass('shop.' || $1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
			t.Errorf("table shop.%s missing (%v)", table, err)
		}
	}
	// Another schema in the same database is independent.
	if applied, err := migrate.Migrate(ctx, db, migrate.Options{Schema: "Other-Schema"}); err != nil || len(applied) != len(all) {
		t.Fatalf("second schema: %v, %v", applied, err)
	}
}

// Concurrent migrators serialize on the advisory lock: one applies, the
// others find nothing to do, nobody fails.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	db := pool(t)
	ctx := context.Background()
	errs := make(chan error, 4)
	counts := make(chan int, 4)
	for i := 0; i < 4; i++ {
		go func() {
			a, err := migrate.Migrate(ctx, db, migrate.Options{})
			errs <- err
			counts <- len(a)
		}()
	}
	total := 0
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		total += <-counts
	}
	all, _ := migrate.Migrations()
	if total != len(all) {
		t.Fatalf("migrations applied %d times in all, want %d", total, len(all))
	}
}

// An outbox insert fires no trigger (migration 005 dropped the NOTIFY
// one): nothing on the commit path takes NOTIFY's cluster-wide lock, and a
// listener on the old channel hears nothing.
func TestOutboxInsertDoesNotNotify(t *testing.T) {
	t.Parallel()
	url := testkit.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := poolFor(t, url)
	if _, err := migrate.Migrate(ctx, db, migrate.Options{Schema: "svc"}); err != nil {
		t.Fatal(err)
	}
	var triggers int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'svc.eventline_outbox'::regclass AND NOT tgisinternal`).Scan(&triggers); err != nil {
		t.Fatal(err)
	}
	if triggers != 0 {
		t.Errorf("the outbox has %d triggers, want none", triggers)
	}
	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, `LISTEN "eventline_outbox.svc"`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO svc.eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ('t', 'k', '\x00', gen_random_uuid(), 'x.E', 'order', 'k')`); err != nil {
		t.Fatal(err)
	}
	// A notification is queued at commit, before the INSERT returns; a
	// round trip on the listener's connection then delivers it if any.
	if _, err := listener.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer wcancel()
	if n, err := listener.WaitForNotification(wctx); err == nil {
		t.Errorf("the insert notified %q", n.Channel)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	db := pool(t)
	ctx := context.Background()
	if _, err := migrate.Migrate(ctx, db, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO eventline_migrations (version, name) VALUES (999, 'future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Migrate(ctx, db, migrate.Options{}); !errors.Is(err, migrate.ErrNewerSchema) {
		t.Fatalf("got %v, want ErrNewerSchema", err)
	}
}

// Any schema name PostgreSQL accepts works, however long or odd: a 60-byte
// name with $$, quotes and a dot migrates (through 001's trigger, which
// 005 drops: the 77-byte channel the plain rule gave was over PostgreSQL's
// limit, and a $$ in the name ended the trigger function's body) and its
// outbox takes inserts. A name PostgreSQL would truncate is refused.
func TestOddSchemaNames(t *testing.T) {
	t.Parallel()
	db := pool(t)
	ctx := context.Background()
	name := `odd$$"name'with.dots` + strings.Repeat("x", 40)
	if len(name) != 60 {
		t.Fatalf("name is %d bytes", len(name))
	}
	if _, err := migrate.Migrate(ctx, db, migrate.Options{Schema: name}); err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{name, "eventline_outbox"}.Sanitize()
	if _, err := db.Exec(ctx, `INSERT INTO `+table+` (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ('t', 'k', '\x00', gen_random_uuid(), 'T', 'a', 'k')`); err != nil {
		t.Fatalf("insert into the outbox of %q: %v", name, err)
	}

	long := strings.Repeat("y", 64)
	if _, err := migrate.Migrate(ctx, db, migrate.Options{Schema: long}); err == nil || !strings.Contains(err.Error(), "at most 63") {
		t.Errorf("64-byte schema name: got %v, want a refusal", err)
	}
}

// A schema whose name is not plain lower case gets a publication name
// pgoutput can take (publication_names folds case and splits at commas).
func TestLogicalNamesArePlain(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, schema := range []string{"public", "Billing", "a,b", "it's", strings.Repeat("x", 63)} {
		l, err := migrate.LogicalNames(context.Background(), pool, migrate.LogicalOptions{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{l.Slot, l.Publication} {
			if len(name) > 63 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				t.Errorf("schema %q: name %q is not plain", schema, name)
			}
		}
	}
}

// A slot made by hand (a PostgreSQL 17 failover slot, say) is recorded when
// SetupLogical finds it, so that losing it later is ErrSlotLost, not a new
// slot made silently.
func TestSetupLogicalRecordsAnExistingSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrate.Migrate(ctx, pool, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	l, err := migrate.LogicalNames(ctx, pool, migrate.LogicalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, l.Slot); err != nil {
		t.Fatal(err)
	}
	if got, err := migrate.SetupLogical(ctx, pool, migrate.LogicalOptions{AllowPublicEmit: true}); err != nil || got.Created {
		t.Fatalf("setup with the slot in place: %+v, %v", got, err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, l.Slot); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.SetupLogical(ctx, pool, migrate.LogicalOptions{AllowPublicEmit: true}); !errors.Is(err, migrate.ErrSlotLost) {
		t.Fatalf("setup after the hand-made slot was dropped: %v", err)
	}
}

// Logical mode refuses a database where every role may write logical
// decoding messages; Emitters restricts the function to the roles named
// (every overload), and a role that may not change its privileges is told
// so instead of PostgreSQL's warning passing for success.
func TestSetupLogicalRestrictsEmit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testkit.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // after the roles' cleanup, which uses it
	if _, err := migrate.Migrate(ctx, pool, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	if a, err := migrate.ReadEmitAccess(ctx, pool); err != nil || !a.Public {
		t.Fatalf("a new database: %+v, %v; want PUBLIC may emit (the server's default)", a, err)
	}
	_, err = migrate.SetupLogical(ctx, pool, migrate.LogicalOptions{})
	if !errors.Is(err, migrate.ErrPublicEmit) || !strings.Contains(err.Error(), "--emitter-role") {
		t.Fatalf("setup with PUBLIC emitting: %v", err)
	}
	var slots int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("a refused setup left %d slots (%v)", slots, err)
	}

	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	producerRole, admin := "svc_"+suffix, "admin_"+suffix
	if _, err := pool.Exec(ctx, `CREATE ROLE `+producerRole+` LOGIN PASSWORD 'pw'; CREATE ROLE `+admin+` LOGIN PASSWORD 'pw' REPLICATION CREATEROLE; GRANT ALL ON ALL TABLES IN SCHEMA public TO `+admin+`; GRANT CREATE ON DATABASE `+currentDB(t, pool)+` TO `+admin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+producerRole+`, `+admin+`; DROP ROLE `+producerRole+`; DROP ROLE `+admin)
	})
	// Not a superuser: REVOKE only warns; SetupLogical says it failed.
	adminPool, err := pgxpool.New(ctx, asUser(t, pool, admin, "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer adminPool.Close()
	if _, err := migrate.SetupLogical(ctx, adminPool, migrate.LogicalOptions{Emitters: []string{producerRole}}); !errors.Is(err, migrate.ErrPublicEmit) || !strings.Contains(err.Error(), "had no effect") {
		t.Fatalf("restricting as a role that may not: %v", err)
	}
	if _, err := migrate.SetupLogical(ctx, pool, migrate.LogicalOptions{Emitters: []string{"no_such_role_" + suffix}}); err == nil || !strings.Contains(err.Error(), "do not exist") {
		t.Fatalf("an emitter role that does not exist: %v", err)
	}

	if _, err := migrate.SetupLogical(ctx, pool, migrate.LogicalOptions{Emitters: []string{producerRole}}); err != nil {
		t.Fatal(err)
	}
	a, err := migrate.ReadEmitAccess(ctx, pool)
	if err != nil || a.Public || !slices.Contains(a.Roles, producerRole) {
		t.Fatalf("after restricting: %+v, %v", a, err)
	}
	var overloads, granted int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE has_function_privilege($1, p.oid, 'EXECUTE'))
		FROM pg_proc p WHERE p.proname = 'pg_logical_emit_message'`, producerRole).Scan(&overloads, &granted); err != nil || overloads < 2 || granted != overloads {
		t.Fatalf("%s may execute %d of %d overloads (%v)", producerRole, granted, overloads, err)
	}
	// Now restricted, a role that may not change privileges passes: it
	// has nothing to change.
	if _, err := migrate.SetupLogical(ctx, adminPool, migrate.LogicalOptions{Emitters: []string{producerRole}}); err != nil {
		t.Fatalf("setup by the relay's role once restricted: %v", err)
	}
}

func currentDB(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var db string
	if err := pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	return `"` + db + `"`
}

// asUser is pool's database URL with another user.
func asUser(t *testing.T, pool *pgxpool.Pool, user, pass string) string {
	t.Helper()
	u, err := url.Parse(pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	return u.String()
}

// Migration 007 turns the outbox's identity id into a column whose default
// takes the transaction's xid before the id (the poll relay's floor needs
// that order): an outbox upgraded with rows in it goes on numbering after
// them, and Requeue's insert under an old id still works.
func TestOutboxIDsContinueAcrossTheUpgrade(t *testing.T) {
	t.Parallel()
	db := pool(t)
	ctx := context.Background()
	opts := migrate.Options{Schema: "upgraded"}
	if err := migrate.MigrateUpTo(ctx, db, opts, 6); err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO upgraded.eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ('t', 'k', '\x00', gen_random_uuid(), 'T', 'a', 'k') RETURNING id`
	var id int64
	for range 3 {
		if err := db.QueryRow(ctx, insert).Scan(&id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := migrate.Migrate(ctx, db, opts); err != nil {
		t.Fatal(err)
	}
	var next int64
	if err := db.QueryRow(ctx, insert).Scan(&next); err != nil || next != id+1 {
		t.Fatalf("first id after the upgrade %d (%v), want %d", next, err, id+1)
	}
	var def string
	if err := db.QueryRow(ctx, `SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'upgraded.eventline_outbox'::regclass
		AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'upgraded.eventline_outbox'::regclass AND attname = 'id')`).Scan(&def); err != nil {
		t.Fatal(err)
	}
	if xid, seq := strings.Index(def, "pg_current_xact_id()"), strings.Index(def, "nextval("); xid < 0 || seq < xid {
		t.Fatalf("id default %q: want the xid taken before nextval", def)
	}
	// A role with INSERT on the outbox only (a service's) still appends.
	writer := pgx.Identifier{testkit.UniqueName(t, "writer")}.Sanitize()
	if _, err := db.Exec(ctx, `CREATE ROLE `+writer+`; GRANT USAGE ON SCHEMA upgraded TO `+writer+`;
		GRANT INSERT, SELECT ON upgraded.eventline_outbox TO `+writer); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+writer); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, insert).Scan(&next); err != nil || next != id+2 {
		t.Fatalf("insert by a role with INSERT only: id %d, %v", next, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO upgraded.eventline_outbox (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		OVERRIDING SYSTEM VALUE VALUES (2, 't', 'k', '\x00', gen_random_uuid(), 'T', 'a', 'k')`); err == nil {
		t.Fatal("a second row with id 2 was accepted")
	} else if !strings.Contains(err.Error(), "duplicate key") {
		t.Fatalf("insert under an old id: %v, want only the duplicate key refused", err)
	}
}
