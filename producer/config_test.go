package producer_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/internal/schemacheck"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/schemas"
)

// A team's own schema, as its .avsc file holds it: docs, an enum default,
// its own layout. hamba's String() of it would drop all three.
const refundText = `{
  "type": "record", "name": "RefundIssued", "namespace": "acme.payments",
  "doc": "A refund left the merchant's account.",
  "fields": [
    {"name": "refund_id", "type": "string", "doc": "Refund id."},
    {"name": "reason", "doc": "Why.", "type": {"type": "enum", "name": "RefundReason", "symbols": ["DUPLICATE", "FRAUD", "OTHER"], "default": "OTHER"}}
  ]
}
`

var refundSchema = avro.MustParse(refundText)

// refund stands for an avrogen type of the team's module.
type refund struct {
	RefundID string `avro:"refund_id"`
	Reason   string `avro:"reason"`
}

func (*refund) Schema() avro.Schema { return refundSchema }

var unlistedSchema = avro.MustParse(`{"type": "record", "name": "Unlisted", "namespace": "acme.payments", "fields": []}`)

type unlisted struct{}

func (*unlisted) Schema() avro.Schema { return unlistedSchema }

const refundPipeline = `schemas: {dir: avro, compatibility: FULL_TRANSITIVE}
topics:
  - name: payments.refunds
    partitions: 3
    events: [acme.payments.RefundIssued]
`

// teamRepo writes the team's eventline.yaml and schema file.
func teamRepo(t *testing.T) (*pipeline.Pipeline, *schemas.Catalog) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "avro"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "eventline.yaml"), []byte(refundPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "avro", "RefundIssued.avsc"), []byte(refundText), 0o644); err != nil {
		t.Fatal(err)
	}
	pipe, err := pipeline.Load(filepath.Join(dir, "eventline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := schemas.LoadCatalogDir(pipe.SchemaDir())
	if err != nil {
		t.Fatal(err)
	}
	return pipe, cat
}

// enforcingRegistry is eventline's registry as users start it in their
// tests (it checks levels, stores the exact text it is given).
func enforcingRegistry(t *testing.T) *sr.Client {
	t.Helper()
	return eventlinetest.StartRegistry(t).Client()
}

// Configuration mistakes surface at New, not at the first Append.
func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pipe, cat := teamRepo(t)
	db := testkit.Setup(t).DB
	cl := enforcingRegistry(t)
	otherPipe, err := pipeline.Parse([]byte("topics: [{name: elsewhere, events: [acme.Other]}]"))
	if err != nil {
		t.Fatal(err)
	}
	stale, _ := schemas.LoadCatalog(os.DirFS("testdata"), "stale")
	for _, c := range []struct {
		name string
		cfg  producer.Config
		is   error
		says string
	}{
		{"no events", producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat}, nil, "no Events"},
		{"no catalog", producer.Config{DB: db, Pipeline: pipe, Registry: cl, Events: []schemas.Event{&refund{}}}, nil, "missing Catalog"},
		{"nil event", producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{nil}}, nil, "nil event at Events[0]"},
		{"not in catalogue", producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&unlisted{}}}, schemas.ErrNotInCatalog, "acme.payments.Unlisted"},
		{"not routed", producer.Config{DB: db, Pipeline: otherPipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&refund{}}, AutoRegister: true}, producer.ErrNotRouted, "acme.payments.RefundIssued"},
		{"stale type", producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: stale, Events: []schemas.Event{&refund{}}, AutoRegister: true}, schemas.ErrStaleType, "regenerate"},
	} {
		_, err := producer.New(ctx, c.cfg)
		if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: New = %v, want %v saying %q", c.name, err, c.is, c.says)
		}
	}
}

// What CI registers (`eventline schemas register`) is what a lookup-only
// producer finds: the file's exact text, one version.
func TestLookupOnlyFindsWhatSchemasRegisterRegistered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pipe, cat := teamRepo(t)
	db := testkit.Setup(t).DB
	cl := enforcingRegistry(t)
	if _, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&refund{}}}); !errors.Is(err, producer.ErrNotRegistered) {
		t.Fatalf("before registration: %v, want ErrNotRegistered", err)
	}
	if _, err := schemacheck.Register(ctx, schemacheck.Options{Pipeline: pipe, Dir: pipe.Dir}, cl); err != nil {
		t.Fatal(err)
	}
	if _, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&refund{}}}); err != nil {
		t.Fatalf("lookup-only after `schemas register`: %v", err)
	}
	vs, err := cl.SubjectVersions(ctx, "payments.refunds-acme.payments.RefundIssued")
	if err != nil || len(vs) != 1 {
		t.Fatalf("versions %v (%v), want one", vs, err)
	}
}

// Auto-register stores the file's text (docs, enum default) and sets the
// subject's level from eventline.yaml first.
func TestAutoRegisterSendsFileTextAndLevel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pipe, cat := teamRepo(t)
	db := testkit.Setup(t).DB
	cl := enforcingRegistry(t)
	if _, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&refund{}}, AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	subject := "payments.refunds-acme.payments.RefundIssued"
	ss, err := cl.SchemaByVersion(ctx, subject, -1)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Schema.Schema != refundText {
		t.Errorf("registered text differs from the file:\n%s", ss.Schema.Schema)
	}
	res := cl.Compatibility(ctx, subject)
	if len(res) != 1 || res[0].Err != nil || res[0].Level.String() != "FULL_TRANSITIVE" {
		t.Errorf("subject level %+v, want FULL_TRANSITIVE from eventline.yaml", res)
	}
	// A second start registers nothing new.
	if _, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&refund{}}, AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := cl.SubjectVersions(ctx, subject); len(vs) != 1 {
		t.Errorf("versions %v after a second start, want one", vs)
	}
}

// A producer pointed at a database or schema where the migrations have not
// run, or given a role that may not write events, fails at New (naming
// the schema and the command), not at the first Append with a bare
// SQLSTATE.
func TestNewRefusesAMissingOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pipe, cat := teamRepo(t)
	f := testkit.Setup(t)
	cl := enforcingRegistry(t)
	cfg := producer.Config{DB: f.DB, Pipeline: pipe, Registry: cl, Catalog: cat, Events: []schemas.Event{&refund{}}, AutoRegister: true, Schema: "payments"}
	_, err := producer.New(ctx, cfg)
	if !errors.Is(err, producer.ErrNotMigrated) || !strings.Contains(err.Error(), `"payments"`) || !strings.Contains(err.Error(), "eventline migrate --schema payments") {
		t.Fatalf("New on an unmigrated schema: %v", err)
	}
	cfg.Schema = ""
	if _, err := producer.New(ctx, cfg); err != nil {
		t.Fatalf("New on the migrated schema: %v", err)
	}
	// A role without INSERT on the outbox (poll mode), or without EXECUTE
	// on pg_logical_emit_message (logical mode, where PUBLIC's was revoked).
	role := "ro_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := f.DB.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'pw'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+role+`;
		DO $$ DECLARE f regprocedure; BEGIN
			FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE proname = 'pg_logical_emit_message' LOOP
				EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
			END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = f.DB.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	u, err := url.Parse(f.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "pw")
	ro, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	cfg.DB = ro
	if _, err := producer.New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "may not INSERT") {
		t.Fatalf("New as a role without INSERT: %v", err)
	}
	cfg.Mode = producer.ModeLogical
	if _, err := producer.New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "--emitter-role") {
		t.Fatalf("New in logical mode as a role that may not emit: %v", err)
	}
}
