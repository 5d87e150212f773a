package testkit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/schemas"
)

// Fixture is the setup integration tests share: a fresh database with
// eventline's tables (schema "public"), the enforcing registry and a serde
// over it. Everything is released when the test ends.
type Fixture struct {
	DatabaseURL string
	// Mode is the producers' mode (Mode option; default ModePoll).
	Mode        producer.Mode
	DB          *pgxpool.Pool
	RegistryURL string
	Registry    *sr.Client
	Serde       *schemas.Serde
}

// FixtureOption adjusts Setup.
type FixtureOption func(*fixtureOpts)

type fixtureOpts struct {
	url      string
	maxConns int32
	mode     producer.Mode
}

// Mode makes the fixture's producers write in mode; ModeLogical also sets up
// the database's publication and slot (migrate.SetupLogical), as `eventline
// migrate --mode logical` does.
func Mode(m producer.Mode) FixtureOption { return func(o *fixtureOpts) { o.mode = m } }

// MaxConns sizes the pool (default pgxpool's: 4 or the CPU count).
func MaxConns(n int32) FixtureOption { return func(o *fixtureOpts) { o.maxConns = n } }

// Database uses the database at url (e.g. a RestartablePostgres's) instead
// of a fresh one on the shared test server.
func Database(url string) FixtureOption { return func(o *fixtureOpts) { o.url = url } }

// Setup returns t's fixture.
func Setup(t testing.TB, opts ...FixtureOption) *Fixture {
	t.Helper()
	ctx := context.Background()
	var o fixtureOpts
	for _, opt := range opts {
		opt(&o)
	}
	if o.url == "" {
		o.url = Postgres(t)
	}
	f := &Fixture{DatabaseURL: o.url, RegistryURL: Registry(t)}
	pcfg, err := pgxpool.ParseConfig(f.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if o.maxConns > 0 {
		pcfg.MaxConns = o.maxConns
	}
	if f.DB, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.DB.Close)
	if _, err := migrate.Migrate(ctx, f.DB, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	f.Mode = o.mode
	if f.Mode == producer.ModeLogical {
		if _, err := migrate.SetupLogical(ctx, f.DB, migrate.LogicalOptions{Emitters: []string{CurrentRole(t, f.DB)}}); err != nil {
			t.Fatal(err)
		}
	}
	if f.Registry, err = sr.NewClient(sr.URLs(f.RegistryURL)); err != nil {
		t.Fatal(err)
	}
	f.Serde = schemas.NewSerde(f.Registry)
	return f
}

// Register registers text under subject and returns its id.
func (f *Fixture) Register(t testing.TB, subject, text string) int {
	t.Helper()
	ss, err := f.Registry.CreateSchema(context.Background(), subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	return ss.ID
}

// RegisterEvent registers the catalogue's event name under subject, the
// shared types it uses first (as the producer does), and returns its id.
func (f *Fixture) RegisterEvent(t testing.TB, subject string, cat *schemas.Catalog, name string) int {
	t.Helper()
	return RegisterEvent(t, f.Registry, subject, cat, name)
}

// RegisterEvent is Fixture.RegisterEvent on any registry client.
func RegisterEvent(t testing.TB, cl *sr.Client, subject string, cat *schemas.Catalog, name string) int {
	t.Helper()
	ctx := context.Background()
	sch, _, err := cat.RegistrySchema(ctx, cl, name, schemas.RefOptions{Register: true})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.CreateSchema(ctx, subject, sch)
	if err != nil {
		t.Fatal(err)
	}
	return ss.ID
}

// Producer returns an auto-registering producer of evs (their files in
// cat) routed by the pipeline file text pipe.
func (f *Fixture) Producer(t testing.TB, pipe []byte, cat *schemas.Catalog, evs ...schemas.Event) *producer.Producer {
	t.Helper()
	p, err := pipeline.Parse(pipe)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := producer.New(context.Background(), producer.Config{DB: f.DB, Pipeline: p, Registry: f.Registry, Catalog: cat, Events: evs, AutoRegister: true, Mode: f.Mode})
	if err != nil {
		t.Fatal(err)
	}
	return prod
}

// CurrentRole is the role db's connections run as: the emitter role of the
// fixtures' logical mode (migrate.LogicalOptions.Emitters).
func CurrentRole(t testing.TB, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) string {
	t.Helper()
	var role string
	if err := db.QueryRow(context.Background(), `SELECT current_user`).Scan(&role); err != nil {
		t.Fatal(err)
	}
	return role
}
