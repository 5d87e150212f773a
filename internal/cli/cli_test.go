package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
		// One mode vocabulary: the producer's old words are not modes.
		{[]string{"migrate", "--mode", "message"}, `want "poll" or "logical"`},
		{[]string{"relay", "--mode", "table"}, `want "poll" or "logical"`},
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
// cluster that serves only TLS and SASL PLAIN and a registry that requires
// Basic auth (as Confluent Cloud does):
// kfake, or Apache Kafka's SASL_SSL listener under make test-kafka. The
// plaintext path is the library's TestSaga.
func TestDemoAgainstEnvironment(t *testing.T) {
	t.Parallel()
	sc := testkit.SecureKafka(t)
	up := sc.Users["PLAIN"]
	reg := testkit.RegistryWithAuth(t, "sr-key", "sr-secret-xyzzy")
	db := testkit.Postgres(t)
	code, out, errOut := run(t, map[string]string{
		"KAFKA_BROKERS":                        strings.Join(sc.Brokers, ","),
		"KAFKA_TLS_CA_FILE":                    sc.CAFile,
		"KAFKA_SASL_MECHANISM":                 "PLAIN",
		"KAFKA_SASL_USERNAME":                  up[0],
		"KAFKA_SASL_PASSWORD":                  up[1],
		"SCHEMA_REGISTRY_URL":                  reg,
		"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "sr-key:sr-secret-xyzzy",
		"DATABASE_URL":                         db,
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
	if strings.Contains(out+errOut, up[1]) || strings.Contains(out+errOut, "xyzzy") {
		t.Errorf("a password is in the demo's output")
	}

	// A wrong password or an untrusted CA ends the demo at once, with the
	// broker's reason.
	for name, tc := range map[string]struct{ key, value, want string }{
		"wrong password": {"KAFKA_SASL_PASSWORD", "not-the-password-xyzzy", "SASL_AUTHENTICATION_FAILED"},
		"untrusted CA":   {"KAFKA_TLS_CA_FILE", sc.OtherCAFile, "certificate signed by unknown authority"},
	} {
		env := map[string]string{"KAFKA_BROKERS": strings.Join(sc.Brokers, ","), "KAFKA_TLS_CA_FILE": sc.CAFile, "KAFKA_SASL_MECHANISM": "PLAIN",
			"KAFKA_SASL_USERNAME": up[0], "KAFKA_SASL_PASSWORD": up[1], "SCHEMA_REGISTRY_URL": reg,
			"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "sr-key:sr-secret-xyzzy", "DATABASE_URL": db}
		env[tc.key] = tc.value
		start := time.Now()
		code, out, errOut := run(t, env, "demo", "--orders", "10", "--json", "--prefix", testkit.UniqueName(t, "bad")+".")
		if took := time.Since(start); code == 0 || !strings.Contains(errOut, tc.want) || took > 20*time.Second {
			t.Errorf("%s: demo exit %d after %v, want a failure naming %q within 20 s\n%s\n%s", name, code, took, tc.want, out, errOut)
		}
		if strings.Contains(out+errOut, "xyzzy") {
			t.Errorf("%s: a password is in the demo's output", name)
		}
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

// migrate --mode logical makes the slot once, says so, and says it is in place
// after; --recreate-slot replaces a dropped one and prints the window.
func TestMigrateLogicalCLI(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	env := map[string]string{"DATABASE_URL": db}
	// Every role may emit (the server's default): refused, naming the fix.
	code, out, errOut := run(t, env, "migrate", "--mode", "logical", "--schema", "shop")
	if code != cli.ExitFail || !strings.Contains(errOut, "every role may write logical decoding messages") || !strings.Contains(errOut, "--emitter-role") {
		t.Fatalf("PUBLIC may emit: exit %d\n%s%s", code, out, errOut)
	}
	first, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	role := testkit.CurrentRole(t, first)
	first.Close(context.Background())
	env["EVENTLINE_EMITTER_ROLES"] = role
	code, out, errOut = run(t, env, "migrate", "--mode", "logical", "--schema", "shop")
	if code != 0 || !strings.Contains(out, "created replication slot eventline_") || !strings.Contains(out, "publication eventline_shop") ||
		!strings.Contains(out, "PUBLIC revoked; granted to "+role) {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errOut)
	}
	delete(env, "EVENTLINE_EMITTER_ROLES") // restricted once: later runs need no role list
	code, out, _ = run(t, env, "migrate", "--mode", "logical", "--schema", "shop")
	if code != 0 || !strings.Contains(out, "is in place") {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, env, "migrate", "--mode", "logical", "--schema", "shop")
	if code != cli.ExitFail || !strings.Contains(errOut, "replication slot lost") || !strings.Contains(errOut, "operations.md") {
		t.Fatalf("slot dropped: exit %d\n%s", code, errOut)
	}
	code, out, errOut = run(t, env, "migrate", "--mode", "logical", "--recreate-slot", "--schema", "shop")
	if code != 0 || !strings.Contains(out, "were NOT delivered") {
		t.Fatalf("recreate: exit %d\n%s%s", code, out, errOut)
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

// `eventline dev` with EVENTLINE_DEV_REGISTRY_USER_INFO_FILE serves a
// registry that answers 401 without the credentials and works with them
// (through the CLI's SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO); the password is
// in none of dev's output. A malformed value is a usage error naming the
// variable, not the value.
func TestDevRegistryAuth(t *testing.T) {
	t.Parallel()
	const pass = "dev-pw-xyzzy"
	code, _, errOut := run(t, map[string]string{"EVENTLINE_DEV_REGISTRY_USER_INFO": "no-colon-xyzzy"}, "dev", "--data-dir", t.TempDir())
	if code != cli.ExitUsage || !strings.Contains(errOut, "EVENTLINE_DEV_REGISTRY_USER_INFO") || strings.Contains(errOut, "xyzzy") {
		t.Errorf("malformed user info: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, map[string]string{"EVENTLINE_DEV_REGISTRY_USER_INFO": ":" + pass}, "dev", "--data-dir", t.TempDir())
	if code != cli.ExitUsage || !strings.Contains(errOut, "non-empty user") || strings.Contains(errOut, "xyzzy") {
		t.Errorf("empty user: exit %d, stderr %q", code, errOut)
	}

	infoFile := filepath.Join(t.TempDir(), "registry-user-info")
	if err := os.WriteFile(infoFile, []byte("dev:"+pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": testkit.Postgres(t), "EVENTLINE_DEV_REGISTRY_USER_INFO_FILE": infoFile}
	// dev prints its KEY=value lines once every service accepts
	// connections: reading them through a pipe is the readiness signal.
	outR, outW := io.Pipe()
	var stdout, stderr testkit.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"dev", "--data-dir", t.TempDir(), "--kafka-port", "-1", "--registry-port", "-1"},
			&cli.Env{Stdout: outW, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
		outW.Close()
	}()
	lines := map[string]string{}
	sc := bufio.NewScanner(outR)
	for len(lines) < 3 && sc.Scan() {
		fmt.Fprintln(&stdout, sc.Text())
		k, v, _ := strings.Cut(sc.Text(), "=")
		lines[k] = v
	}
	go func() { _, _ = io.Copy(&stdout, outR) }()
	url := lines["SCHEMA_REGISTRY_URL"]
	if url == "" {
		t.Fatalf("dev printed no SCHEMA_REGISTRY_URL\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	resp, err := http.Get(url + "/subjects")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("GET /subjects without credentials: %d, WWW-Authenticate %q; want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	r := newRepo(t)
	r.write("eventline.yaml", pipeline("BACKWARD"))
	r.write("schemas/avro/Order.avsc", orderV1)
	cfg := filepath.Join(r.dir, "eventline.yaml")
	if code, out, errOut := run(t, map[string]string{"SCHEMA_REGISTRY_URL": url, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "dev:" + pass}, "schemas", "register", "--config", cfg); code != 0 {
		t.Errorf("register on the dev registry with credentials: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := run(t, map[string]string{"SCHEMA_REGISTRY_URL": url}, "schemas", "register", "--config", cfg); code != 1 || !strings.Contains(errOut, "HTTP 401") {
		t.Errorf("register on the dev registry without credentials: exit %d, %q", code, errOut)
	}

	cancel()
	if code := <-done; code != cli.ExitOK {
		t.Errorf("dev exit %d\n%s", code, stderr.String())
	}
	if all := stdout.String() + stderr.String(); strings.Contains(all, "xyzzy") {
		t.Errorf("the registry password is in dev's output:\n%s", all)
	}
	if !strings.Contains(stderr.String(), "auth=basic") {
		t.Errorf("dev's log does not say the registry requires auth:\n%s", stderr.String())
	}
}
