package bench_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/bench"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/relay"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func env(t *testing.T) bench.Env {
	return bench.Env{Brokers: testkit.Kafka(t), RegistryURL: testkit.Registry(t), DatabaseURL: testkit.Postgres(t)}
}

// A small run of each benchmark produces every field of the --json
// contract with plausible values; figures themselves come from full runs.
func TestRelayBenchSmoke(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := testkit.BuildEventline(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	for _, mode := range modes {
		for _, txn := range []bool{false, true} {
			name := string(mode)
			if txn {
				name += "+transactions"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				relayBenchSmoke(t, bin, mode, txn)
			})
		}
	}
}

var modes = []relay.Mode{relay.ModePoll, relay.ModeLogical}

func relayBenchSmoke(t *testing.T, bin string, mode relay.Mode, txn bool) {
	e := env(t)
	// The relay child's command line is recorded: no secret may be on it.
	argsFile := filepath.Join(t.TempDir(), "argv")
	wrapper := []string{"sh", "-c", `printf '%s\n' "$@" > "$0"; exec "$@"`, argsFile, bin, "relay"}
	res, err := bench.Relay(context.Background(), e, bench.RelayOptions{
		Events: 3000, BatchSize: 500, LatencyRate: 200, LatencyFor: 500 * time.Millisecond, Mode: mode, EventsPerTx: 7,
		RelayCommand: wrapper, Logger: testkit.Logger(t), Transactional: txn,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != string(mode) || res.Transactional != txn {
		t.Errorf("mode %q, transactional %v; want %q, %v", res.Mode, res.Transactional, mode, txn)
	}
	// The drain's 3,000 events in Kafka transactions of at most a batch.
	if txn && (res.Transactions < 6 || res.EventsPerTransaction > 500 || res.MsPerTransaction <= 0) {
		t.Errorf("transactions: %d of %.0f events, %.1f ms each; want at least 6 of at most 500", res.Transactions, res.EventsPerTransaction, res.MsPerTransaction)
	}
	noSlotsLeft(t, e)
	argv, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok := u.User.Password(); !ok || pw == "" {
		t.Fatalf("test database URL has no password to look for")
	} else if strings.Contains(string(argv), pw) || strings.Contains(string(argv), "database-url") {
		t.Errorf("the relay child's argv carries the database URL:\n%s", argv)
	}
	if res.Events != 3000 || res.EventsPerSec <= 0 || res.CeilingEventsPerSec <= 0 || res.LatencyEvents != 100 || res.P99Ms < res.P50Ms || res.MaxRSSMB <= 0 {
		t.Fatalf("implausible result %+v", res)
	}
	b, _ := json.Marshal(res)
	for _, k := range []string{"mode", "events", "events_per_sec", "ceiling_events_per_sec", "p50_ms", "p99_ms", "max_rss_mb"} {
		if !strings.Contains(string(b), `"`+k+`":`) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

// noSlotsLeft: a benchmark drops the replication slots it made (left
// behind, they would hold WAL for ever).
func noSlotsLeft(t *testing.T, e bench.Env) {
	t.Helper()
	db, err := pgx.Connect(context.Background(), e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var slots []string
	if err := db.QueryRow(context.Background(), `SELECT coalesce(array_agg(slot_name::text), '{}') FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if len(slots) > 0 {
		t.Errorf("replication slots left: %v", slots)
	}
}

func TestAppendBenchSmoke(t *testing.T) {
	t.Parallel()
	res, err := bench.Append(context.Background(), env(t), bench.AppendOptions{Writers: 2, Duration: 300 * time.Millisecond, Logger: testkit.Logger(t), WithoutRelay: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.BusinessOnlyTxPerSec <= 0 || res.WithOutboxTxPerSec <= 0 || res.Ratio <= 0 || res.Mode != "poll" {
		t.Fatalf("implausible result %+v", res)
	}
	b, _ := json.Marshal(res)
	for _, k := range []string{"mode", "business_only_tx_per_sec", "with_outbox_tx_per_sec"} {
		if !strings.Contains(string(b), `"`+k+`":`) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

// In logical mode the writers write messages while a logical relay streams
// them; the slot is dropped at the end.
func TestAppendBenchLogicalSmoke(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := testkit.BuildEventline(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e := env(t)
	res, err := bench.Append(context.Background(), e, bench.AppendOptions{Writers: 2, Duration: 300 * time.Millisecond, Logger: testkit.Logger(t),
		Mode: relay.ModeLogical, RelayCommand: []string{bin, "relay"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.BusinessOnlyTxPerSec <= 0 || res.WithOutboxTxPerSec <= 0 || res.Ratio <= 0 || res.Mode != "logical" || !res.RelayRunning {
		t.Fatalf("implausible result %+v", res)
	}
	noSlotsLeft(t, e)
}

// bench e2e: every event appended is seen in Kafka and applied, and every
// field of the --json contract is filled, each hop after the one it needs.
func TestE2EBenchSmoke(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := testkit.BuildEventline(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e2eBenchSmoke(t, bin, mode)
		})
	}
}

func e2eBenchSmoke(t *testing.T, bin string, mode relay.Mode) {
	e := env(t)
	res, err := bench.E2E(context.Background(), e, bench.E2EOptions{Rate: 200, Duration: time.Second, Partitions: 3, Mode: mode,
		RelayCommand: []string{bin, "relay"}, GroupCommand: []string{bin, "bench", "e2e-group"}, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	if res.Events != 200 || res.Mode != string(mode) || res.Machine == "" {
		t.Errorf("events %d, mode %q: %s", res.Events, res.Mode, b)
	}
	noSlotsLeft(t, e)
	if !(0 < res.ToKafkaP50Ms && res.ToKafkaP50Ms <= res.ToKafkaP99Ms && res.ToKafkaP99Ms <= res.ToKafkaP999Ms) ||
		!(0 < res.ToAppliedP50Ms && res.ToAppliedP50Ms <= res.ToAppliedP99Ms && res.ToAppliedP99Ms <= res.ToAppliedP999Ms) {
		t.Errorf("percentiles out of order: %s", b)
	}
	// The hops in order (the produce time is a record timestamp, whole
	// milliseconds: up to 1 ms early). Readable in Kafka and the apply's
	// start are not ordered: two readers (this process's tailing consumer
	// and the group's) race for the same record, and on a loaded machine
	// either may see it first; both come after the produce.
	if !(res.ToProducedP50Ms <= res.ToKafkaP50Ms+1 && res.ToProducedP50Ms <= res.ToApplyStartP50Ms+1 && 0 < res.ToApplyStartP50Ms && res.ToApplyStartP50Ms <= res.ToAppliedP50Ms) {
		t.Errorf("hops out of order at p50: %s", b)
	}
	// Each process measured apart, the PostgreSQL sessions by whose they
	// are (their application_name). /proc counts in 10 ms ticks: a run
	// this short may see no time for one of them, but not for all.
	var total float64
	for _, role := range []string{"relay", "group", "bench", "postgres writers", "postgres relay", "postgres group"} {
		sec, ok := res.CPUPer1000[role]
		if !ok {
			t.Errorf("no process found for %s: %s", role, b)
		}
		total += sec
	}
	if total <= 0 {
		t.Errorf("no CPU time measured: %s", b)
	}
}

// bench deploy: a rolling restart and a killed member under load, with
// member processes of the built binary: every event applied once, none
// lost, the stalls and latencies measured (the figures themselves are the
// benchmark's, not the test's).
func TestDeployBenchSmoke(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := testkit.BuildEventline(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	res, err := bench.Deploy(context.Background(), env(t), bench.DeployOptions{Rate: 200, Partitions: 4, Members: 2,
		Scenarios: []string{bench.ScenarioRolling, bench.ScenarioKill}, Choices: []string{bench.ChoiceStatic},
		Steady: time.Second, Settle: time.Second, SessionTimeout: 6 * time.Second, FailShare: 0.05,
		MemberCommand: []string{bin, "bench", "deploy-member"}, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	if len(res.Rows) != 2 {
		t.Fatalf("%d rows, want 2: %s", len(res.Rows), b)
	}
	for _, r := range res.Rows {
		if r.Events < 200 || r.Lost != 0 || r.AppliedTwice != 0 || r.Protocol != "classic" || r.MaxStallMs <= 0 || r.SteadyP99Ms <= 0 || r.MaxRestartSeconds <= 0 {
			t.Errorf("%s: %+v", r.Scenario, r)
		}
	}
}
