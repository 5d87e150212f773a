package roundtrip_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/eventline/eventline/internal/roundtrip"
	"github.com/eventline/eventline/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The round trip runs against whichever broker testkit provides: kfake by
// default, the real Apache Kafka under `make test-kafka`.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	brokers := testkit.Kafka(t)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	db := testkit.Postgres(t)
	topic := testkit.UniqueName(t, "rt")
	ctx := context.Background()

	cfg := roundtrip.Config{Brokers: brokers, RegistryURL: reg.URL(), DatabaseURL: db, Records: 50, Topic: topic, Logger: testkit.Logger(t)}
	res, err := roundtrip.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if res.Produced != 50 || len(res.Received) != 50 || res.Rows != 50 {
		t.Fatalf("produced %d, received %d, rows %d; want 50 each", res.Produced, len(res.Received), res.Rows)
	}
	parts := map[int32]bool{}
	for _, r := range res.Received {
		parts[r.Partition] = true
	}
	if len(parts) < 2 {
		t.Errorf("50 keys landed on %d partition(s) of 3; keys are not spreading", len(parts))
	}

	// Every stored row records where the consumer read it: the offsets of a
	// partition are distinct and the sequence numbers complete.
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var distinctSeq, distinctPos int
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT seq), count(DISTINCT (partition, "offset")) FROM eventline_demo_pings WHERE run_id = $1`, res.RunID).Scan(&distinctSeq, &distinctPos); err != nil {
		t.Fatal(err)
	}
	if distinctSeq != 50 || distinctPos != 50 {
		t.Errorf("distinct seq %d, distinct positions %d; want 50 each", distinctSeq, distinctPos)
	}

	// A second run on the same topic reads past the first run's records
	// with a new group and stores only its own.
	res2, err := roundtrip.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("second round trip: %v", err)
	}
	if res2.Rows != 50 || res2.Skipped < 50 {
		t.Errorf("second run: rows %d (want 50), skipped %d (want >= 50)", res2.Rows, res2.Skipped)
	}

	var out strings.Builder
	res.Print(&out)
	for _, want := range []string{"schema id", "produced 50 records", "50 rows"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRoundTripBadConfig(t *testing.T) {
	t.Parallel()
	_, err := roundtrip.Run(context.Background(), roundtrip.Config{Records: -1})
	if err == nil {
		t.Fatal("want an error for an empty config")
	}
	for _, want := range []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL", "records must be at least 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// A database that is down yields an error naming it, with the password
// masked.
func TestRoundTripDatabaseDown(t *testing.T) {
	t.Parallel()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	_, err := roundtrip.Run(context.Background(), roundtrip.Config{
		Brokers:     testkit.Kafka(t),
		RegistryURL: reg.URL(),
		DatabaseURL: "postgres://eventline:s3cret@127.0.0.1:1/postgres?connect_timeout=2",
	})
	if err == nil {
		t.Fatal("want an error when postgres is down")
	}
	if !strings.Contains(err.Error(), "error connecting to postgres at postgres://eventline:xxxxx@127.0.0.1:1") {
		t.Errorf("error does not name the redacted database: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
}
