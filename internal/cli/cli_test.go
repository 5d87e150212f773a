package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/cli"
	"github.com/eventline/eventline/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(context.Background(), args, &cli.Env{
		Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: eventline"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"dev", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"dev", "--kafka-port", "abc"}, "invalid value"},
		{[]string{"dev", "--kafka-port", "0"}, "ports must be between"},
		{[]string{"dev", "stray"}, `unexpected argument "stray"`},
		{[]string{"demo", "--orders", "0"}, "--orders must be at least 1"},
		{[]string{"relay"}, "needs --database-url"},
		{[]string{"relay", "parked"}, "usage: eventline relay parked"},
		{[]string{"relay", "parked", "requeue", "x"}, "is not a row id"},
		{[]string{"bench"}, "usage: eventline bench relay"},
		{[]string{"bench", "relay", "--events", "0"}, "counts must be positive"},
		{[]string{"bench", "consume", "--retry-share", "1"}, "counts must be positive"},
		{[]string{"dlt"}, "usage: eventline dlt"},
		{[]string{"migrate", "extra"}, `unexpected argument "extra"`},
	} {
		code, stdout, stderr := run(t, nil, tc.args...)
		if code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, cli.ExitUsage)
		}
		if !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("%v: output lacks %q:\n%s%s", tc.args, tc.want, stdout, stderr)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	if code, out, _ := run(t, nil, "help"); code != 0 || !strings.Contains(out, "dev ") {
		t.Errorf("help: exit %d, output %q", code, out)
	}
	if code, _, _ := run(t, nil, "dev", "-h"); code != 0 {
		t.Errorf("dev -h: exit %d", code)
	}
	if code, out, _ := run(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "eventline ") {
		t.Errorf("version: exit %d, output %q", code, out)
	}
	if code, _, errOut := run(t, map[string]string{"EVENTLINE_LOG_LEVEL": "loud"}, "version"); code != cli.ExitUsage || !strings.Contains(errOut, "EVENTLINE_LOG_LEVEL") {
		t.Errorf("bad log level: exit %d, %q", code, errOut)
	}
}

// `eventline demo` with the services named by the environment, on a
// cluster that serves only TLS and SASL PLAIN (as Confluent Cloud does):
// kfake, or Apache Kafka's SASL_SSL listener under make test-kafka. The
// plaintext path is the library's TestSaga.
func TestDemoAgainstEnvironment(t *testing.T) {
	t.Parallel()
	sc := testkit.SecureKafka(t)
	up := sc.Users["PLAIN"]
	reg := testkit.Registry(t)
	db := testkit.Postgres(t)
	code, out, errOut := run(t, map[string]string{
		"KAFKA_BROKERS":        strings.Join(sc.Brokers, ","),
		"KAFKA_TLS_CA_FILE":    sc.CAFile,
		"KAFKA_SASL_MECHANISM": "PLAIN",
		"KAFKA_SASL_USERNAME":  up[0],
		"KAFKA_SASL_PASSWORD":  up[1],
		"SCHEMA_REGISTRY_URL":  reg,
		"DATABASE_URL":         db,
	}, "demo", "--orders", "200", "--poison", "2", "--json")
	if code != 0 {
		t.Fatalf("demo exit %d:\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{`"orders":200`, `"dlt_records":2`, `"duplicate_applications":0`, `"pending":0`, `"invariants_ok":true`} {
		if !strings.Contains(out, want) {
			t.Errorf("demo JSON lacks %s: %s", want, out)
		}
	}
	if strings.Contains(errOut, "starting the embedded stack") {
		t.Errorf("demo started an embedded stack although the environment named services")
	}
	if strings.Contains(out+errOut, up[1]) {
		t.Errorf("the SASL password is in the demo's output")
	}
}

// While the demo runs, --metrics-addr serves /readyz (200 once the relays
// hold their sessions and both consumer groups joined) and the pipeline's
// metrics in Prometheus text.
func TestDemoMetricsAndHealth(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.StablePort(t))
	prefix := testkit.UniqueName(t, "m") + "."
	env := map[string]string{
		"KAFKA_BROKERS":       strings.Join(testkit.Kafka(t), ","),
		"SCHEMA_REGISTRY_URL": testkit.Registry(t),
		"DATABASE_URL":        testkit.Postgres(t),
	}
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		// Its own topic and group names: TestDemoAgainstEnvironment runs the
		// default ones at the same time, on the same broker under make test-kafka.
		code, out, errOut := run(t, env, "demo", "--orders", "3000", "--poison", "1", "--quiet", "--metrics-addr", addr, "--prefix", prefix)
		done <- result{code, out, errOut}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	want := []string{
		`eventline_outbox_backlog{schema="orders"}`, `eventline_outbox_oldest_age_seconds{schema="inventory"}`,
		`eventline_relay_published_total{schema="orders"}`, `eventline_relay_parked_total`,
		`eventline_consumer_applied_total{group="` + prefix + `inventory"}`, `eventline_consumer_duplicates_total{group="` + prefix + `orders"}`,
		`eventline_consumer_retried_total`, `eventline_consumer_dead_lettered_total`,
		`eventline_consumer_apply_seconds_bucket{group="` + prefix + `inventory"`, `eventline_consumer_lag{group="` + prefix + `inventory",topic="` + prefix + `orders.events"}`,
	}
	var metrics string
	testkit.WaitFor(t, 120*time.Second, "ready and every metric exported", func() bool {
		select {
		case r := <-done:
			t.Fatalf("demo ended (exit %d) before its metrics were complete; last scrape:\n%s\n%s", r.code, metrics, r.errOut)
		default:
		}
		if code, _ := get("/readyz"); code != http.StatusOK {
			return false
		}
		_, metrics = get("/metrics")
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				return false
			}
		}
		return true
	})
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.out, "all invariants hold") {
		t.Fatalf("demo exit %d:\n%s\n%s", r.code, r.out, r.errOut)
	}
}

func TestMigrateCLI(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	env := map[string]string{"DATABASE_URL": db}
	code, out, errOut := run(t, env, "migrate", "--schema", "shop")
	if code != 0 || !strings.Contains(out, "applied 001_outbox to schema shop") {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, env, "migrate", "--schema", "shop")
	if code != 0 || !strings.Contains(out, "schema shop is up to date") {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	if code, _, errOut := run(t, nil, "migrate"); code != cli.ExitUsage || !strings.Contains(errOut, "DATABASE_URL") {
		t.Fatalf("no database: exit %d\n%s", code, errOut)
	}
	code, _, errOut = run(t, map[string]string{"DATABASE_URL": "postgres://u:topsecret@127.0.0.1:1/x?connect_timeout=2"}, "migrate")
	if code != cli.ExitFail || strings.Contains(errOut, "topsecret") || !strings.Contains(errOut, "xxxxx") {
		t.Fatalf("database down: exit %d\n%s", code, errOut)
	}
}

func TestDevRefusesUnusableDatabaseURL(t *testing.T) {
	t.Parallel()
	code, _, errOut := run(t, map[string]string{"DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2"}, "dev", "--data-dir", t.TempDir())
	if code != cli.ExitFail {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut, "DATABASE_URL is set but unusable") || strings.Contains(errOut, "hunter2") {
		t.Errorf("want a clear error without the password, got:\n%s", errOut)
	}
}
