package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

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
		{[]string{"demo", "--records", "0"}, "--records must be at least 1"},
		{[]string{"relay"}, "needs --database-url"},
		{[]string{"relay", "parked"}, "usage: eventline relay parked"},
		{[]string{"relay", "parked", "requeue", "x"}, "is not a row id"},
		{[]string{"bench"}, "usage: eventline bench relay"},
		{[]string{"bench", "relay", "--events", "0"}, "counts must be positive"},
		{[]string{"dlt"}, "not available yet (planned in issue #5)"},
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

// `eventline demo` with the services named by the environment: the broker
// is testkit's (kfake, or the real Kafka under make test-kafka).
func TestDemoAgainstEnvironment(t *testing.T) {
	t.Parallel()
	brokers := testkit.Kafka(t)
	reg := testkit.Registry(t)
	db := testkit.Postgres(t)
	code, out, errOut := run(t, map[string]string{
		"KAFKA_BROKERS":       strings.Join(brokers, ","),
		"SCHEMA_REGISTRY_URL": reg,
		"DATABASE_URL":        db,
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
