package devstack_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/demo"
	"github.com/eventline/eventline/internal/devstack"
	"github.com/eventline/eventline/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func start(t *testing.T, dataDir string) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(context.Background(), devstack.Config{
		DataDir:           dataDir,
		KafkaPort:         -1,
		RegistryPort:      -1,
		EphemeralPostgres: true,
		Logger:            testkit.Logger(t),
	})
	if err != nil {
		t.Fatalf("starting dev stack: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// The dev stack's three services work together: a full round trip (registry,
// broker, consumer group, database) runs through them, and pgx connects to
// the printed DATABASE_URL.
func TestDevStackRoundTrip(t *testing.T) {
	t.Parallel()
	s := start(t, testkit.DataDir(t))
	ctx := context.Background()

	env := strings.Join(s.Env(), "\n")
	for _, k := range []string{"KAFKA_BROKERS=127.0.0.1:", "SCHEMA_REGISTRY_URL=http://127.0.0.1:", "DATABASE_URL=postgres://eventline:"} {
		if !strings.Contains(env, k) {
			t.Errorf("env lacks %q:\n%s", k, env)
		}
	}

	conn, err := pgx.Connect(ctx, s.DatabaseURL())
	if err != nil {
		t.Fatalf("pgx cannot connect to DATABASE_URL: %v", err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	conn.Close(ctx)

	// The saga through the dev stack: its embedded registry (enforcing
	// compatibility, registering the demo's schemas), broker and cluster.
	res, err := demo.Run(ctx, demo.Config{
		Brokers:     strings.Split(s.Brokers(), ","),
		RegistryURL: s.RegistryURL(),
		DatabaseURL: s.DatabaseURL(),
		Orders:      50,
		Poison:      1,
		RetryDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond},
		Logger:      testkit.Logger(t),
	})
	if err != nil {
		t.Fatalf("saga through the dev stack: %v", err)
	}
	if !res.InvariantsOK || res.Orders != 50 {
		t.Fatalf("saga through the dev stack: %+v", *res)
	}
}

// Topics, records, committed group offsets and database contents written
// before a restart are there after it.
func TestDevStackRestartKeepsState(t *testing.T) {
	t.Parallel()
	dir := testkit.DataDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := start(t, dir)
	conn, err := pgx.Connect(ctx, s.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 100) g`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	const topic, group = "restart.check", "restart-group"
	cl := testkit.Client(t, strings.Split(s.Brokers(), ","))
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, 4, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	var recs []*kgo.Record
	for i := 0; i < 200; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte{byte(i % 7)}, Value: []byte{byte(i)}})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 3, LeaderEpoch: -1})
	if _, err := kadm.NewClient(cl).CommitOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	reg, err := sr.NewClient(sr.URLs(s.RegistryURL()))
	if err != nil {
		t.Fatal(err)
	}
	before, err := reg.CreateSchema(ctx, "restart.check-x.Kept", sr.Schema{Schema: `{"type":"record","name":"Kept","namespace":"x","fields":[{"name":"a","type":"int"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}

	s2 := start(t, dir)
	conn, err = pgx.Connect(ctx, s2.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil || n != 100 {
		t.Fatalf("orders after restart: %d, %v", n, err)
	}

	cl2 := testkit.Client(t, strings.Split(s2.Brokers(), ","), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	adm := kadm.NewClient(cl2)
	td, err := adm.ListTopics(ctx, topic)
	if err != nil || len(td[topic].Partitions) != 4 {
		t.Fatalf("topic after restart: %+v, %v", td[topic], err)
	}
	fo, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fo.Lookup(topic, 0); !ok || o.At != 3 {
		t.Fatalf("committed offset after restart: %+v (found %v), want 3", o, ok)
	}
	reg2, err := sr.NewClient(sr.URLs(s2.RegistryURL()))
	if err != nil {
		t.Fatal(err)
	}
	after, err := reg2.SchemaByVersion(ctx, "restart.check-x.Kept", 1)
	if err != nil || after.ID != before.ID {
		t.Fatalf("schema after restart: %+v, %v; want id %d", after, err, before.ID)
	}
	// And the restarted registry still enforces compatibility.
	_, err = reg2.CreateSchema(ctx, "restart.check-x.Kept", sr.Schema{Schema: `{"type":"record","name":"Kept","namespace":"x","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}`})
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 409 {
		t.Fatalf("incompatible schema after restart: %v, want HTTP 409", err)
	}
	seen := map[byte]bool{}
	for len(seen) < 200 {
		fs := cl2.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 200 records after restart", len(seen))
		}
		fs.EachRecord(func(r *kgo.Record) { seen[r.Value[0]] = true })
	}
}

func TestDevStackBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []devstack.Config{
		{},
		{DataDir: "x", KafkaPort: 70000},
		{DataDir: "x", Partitions: -2},
	} {
		if _, err := devstack.Start(context.Background(), cfg); err == nil {
			t.Errorf("Start(%+v) succeeded, want a config error", cfg)
		}
	}
}
