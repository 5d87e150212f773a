package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/deadletter"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/cli"
	"github.com/eventline/eventline/internal/testkit"
)

// The CLI reaches a cluster that serves only TLS and SASL with the
// documented KAFKA_TLS_* / KAFKA_SASL_* settings, for every mechanism the
// embedded broker offers (the password also from a file), and fails fast
// with a clear error, which never shows the password, on a wrong password
// or a CA it does not trust.
func TestSecuredClusterCommands(t *testing.T) {
	t.Parallel()
	sc := testkit.SecureKafka(t)
	cl := secureClient(t, sc)
	group := testkit.UniqueName(t, "g")
	dlt := consumers.DLTTopic("orders", group)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, dlt); err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: dlt, Key: []byte("k"), Value: []byte("\x00garbage"), Headers: []kgo.RecordHeader{
		{Key: headers.Group, Value: []byte(group)}, {Key: headers.OriginalTopic, Value: []byte("orders")},
		{Key: headers.OriginalPartition, Value: []byte("0")}, {Key: headers.ErrorClass, Value: []byte(consumers.ClassDecode)},
	}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	base := func(mech string) map[string]string {
		up := sc.Users[mech]
		return map[string]string{"KAFKA_BROKERS": strings.Join(sc.Brokers, ","), "KAFKA_TLS_CA_FILE": sc.CAFile,
			"KAFKA_SASL_MECHANISM": mech, "KAFKA_SASL_USERNAME": up[0], "KAFKA_SASL_PASSWORD": up[1]}
	}
	list := func(env map[string]string) (int, string, string) {
		return run(t, env, "dlt", "list", "--group", group, "--json", "--timeout", "20s")
	}
	for mech := range sc.Users {
		code, out, errOut := list(base(mech))
		var dls []deadletter.Record
		if code != 0 || json.Unmarshal([]byte(out), &dls) != nil || len(dls) != 1 {
			t.Errorf("%s: exit %d\n%s\n%s", mech, code, out, errOut)
		}
	}
	fromFile := base("SCRAM-SHA-512")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(fromFile["KAFKA_SASL_PASSWORD"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	delete(fromFile, "KAFKA_SASL_PASSWORD")
	fromFile["KAFKA_SASL_PASSWORD_FILE"] = pwFile
	if code, out, errOut := list(fromFile); code != 0 || !strings.Contains(out, `"key": "k"`) && !strings.Contains(out, `"key":"k"`) {
		t.Errorf("password from a file: exit %d\n%s\n%s", code, out, errOut)
	}

	wrong := base("SCRAM-SHA-256")
	wrong["KAFKA_SASL_PASSWORD"] = "not-the-password-xyzzy"
	untrusted := base("SCRAM-SHA-256")
	untrusted["KAFKA_TLS_CA_FILE"] = sc.OtherCAFile
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"wrong password": {wrong, "SASL"},
		"untrusted CA":   {untrusted, "certificate"},
		"no SASL user":   {map[string]string{"KAFKA_BROKERS": strings.Join(sc.Brokers, ","), "KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_USERNAME"},
		"bad mechanism":  {map[string]string{"KAFKA_BROKERS": strings.Join(sc.Brokers, ","), "KAFKA_SASL_MECHANISM": "GSSAPI"}, "want PLAIN"},
	} {
		start := time.Now()
		code, out, errOut := list(tc.env)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q: want a failure naming %q", name, code, errOut, tc.want)
		}
		if out != "" { // not "[]": a failed listing must not read as an empty DLT
			t.Errorf("%s: stdout %q", name, out)
		}
		if strings.Contains(errOut, "xyzzy") {
			t.Errorf("%s: the password is in the error output", name)
		}
		took := time.Since(start)
		if took > 15*time.Second {
			t.Errorf("%s: took %v to fail", name, took)
		}
		t.Logf("%s: failed in %v: %s", name, took.Round(time.Millisecond), strings.TrimSpace(errOut))
	}
	if code, _, errOut := run(t, map[string]string{"KAFKA_BROKERS": "127.0.0.1:1"}, "dlt", "list", "--registry", "http://u:pw-xyzzy@127.0.0.1:1"); code == 0 ||
		!strings.Contains(errOut, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") || strings.Contains(errOut, "xyzzy") {
		t.Errorf("credentials in the registry URL: exit %d, %q", code, errOut)
	}
}

// `eventline relay` publishes to a TLS+SASL cluster with the same
// settings.
func TestRelayOnSecuredCluster(t *testing.T) {
	t.Parallel()
	sc := testkit.SecureKafka(t)
	f := testkit.Setup(t)
	topic := testkit.UniqueName(t, "t")
	if _, err := f.DB.Exec(context.Background(), `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ($1, 'k', '\x000000000100', gen_random_uuid(), 'T', 'a', 'k')`, topic); err != nil {
		t.Fatal(err)
	}
	up := sc.Users["SCRAM-SHA-512"]
	env := map[string]string{"DATABASE_URL": f.DatabaseURL, "KAFKA_BROKERS": strings.Join(sc.Brokers, ","), "KAFKA_TLS_CA_FILE": sc.CAFile,
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": up[0], "KAFKA_SASL_PASSWORD": up[1],
		"EVENTLINE_CONFIG": pipelineFile(t, fmt.Sprintf("topics: [{name: %s, partitions: 3, events: [T]}]", topic))}
	if _, err := kadm.NewClient(secureClient(t, sc)).CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr testkit.SyncBuffer
	go func() {
		done <- cli.Run(ctx, []string{"relay"}, &cli.Env{Stdout: &stderr, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	}()
	defer func() {
		if t.Failed() {
			t.Log(stderr.String())
		}
	}()
	testkit.WaitFor(t, 30*time.Second, "the row published", func() bool {
		var n int
		if err := f.DB.QueryRow(context.Background(), `SELECT count(*) FROM eventline_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("relay exit %d\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), up[1]) {
		t.Error("the SASL password is in the relay's output")
	}

	// A wrong password or an untrusted CA is a deployment mistake: the
	// relay exits with the reason instead of retrying it for ever.
	for name, tc := range map[string]struct {
		key, value, want string
	}{
		"wrong password": {"KAFKA_SASL_PASSWORD", "not-the-password-xyzzy", "SASL_AUTHENTICATION_FAILED"},
		"untrusted CA":   {"KAFKA_TLS_CA_FILE", sc.OtherCAFile, "certificate signed by unknown authority"},
	} {
		bad := maps.Clone(env)
		bad[tc.key] = tc.value
		var out testkit.SyncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		start := time.Now()
		code := cli.Run(ctx, []string{"relay"}, &cli.Env{Stdout: &out, Stderr: &out, Getenv: func(k string) string { return bad[k] }})
		cancel()
		took := time.Since(start)
		if code == 0 || !strings.Contains(out.String(), tc.want) || took > 15*time.Second {
			t.Errorf("%s: relay exit %d after %v, want a failure naming %q within 15 s\n%s", name, code, took, tc.want, out.String())
		}
		if strings.Contains(out.String(), "xyzzy") {
			t.Errorf("%s: the password is in the relay's output", name)
		}
	}
}

// secureClient is a franz-go client of sc (TLS, SCRAM-SHA-256).
func secureClient(t *testing.T, sc testkit.SecureCluster) *kgo.Client {
	t.Helper()
	pem, err := os.ReadFile(sc.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	up := sc.Users["SCRAM-SHA-256"]
	return testkit.Client(t, sc.Brokers, kgo.DialTLSConfig(&tls.Config{RootCAs: roots}),
		kgo.SASL(scram.Auth{User: up[0], Pass: up[1]}.AsSha256Mechanism()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

// --database-url refuses a connection string carrying a password, in any
// of its forms, without showing it and before connecting (ps shows a
// process's arguments to every user), and names the places a password
// goes; DATABASE_URL_FILE is one of them.
func TestDatabaseURLFlagRefusesPasswords(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"migrate", "--database-url", "postgres://u:pw-xyzzy@127.0.0.1:1/db"},
		{"migrate", "--database-url", "postgres://u@127.0.0.1:1/db?password=pw-xyzzy"},
		{"relay", "--database-url", "host=127.0.0.1 port=1 password='pw xyzzy'", "--brokers", "127.0.0.1:1"},
		{"relay", "parked", "list", "--database-url", "postgresql://u:pw-xyzzy@127.0.0.1:1/db"},
	} {
		start := time.Now()
		code, out, errOut := run(t, nil, args...)
		if code != cli.ExitUsage || time.Since(start) > 5*time.Second {
			t.Errorf("%v: exit %d after %v, want %d at once\n%s", args[:2], code, time.Since(start), cli.ExitUsage, errOut)
		}
		for _, want := range []string{"--database-url carries a password", "DATABASE_URL", "DATABASE_URL_FILE", "PGPASSWORD", "PGPASSFILE"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr %q does not name %s", args[:2], errOut, want)
			}
		}
		if strings.Contains(out+errOut, "xyzzy") {
			t.Errorf("%v: the password is in the output", args[:2])
		}
	}

	db := testkit.Postgres(t)
	file := filepath.Join(t.TempDir(), "database-url")
	if err := os.WriteFile(file, []byte(db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	schema := testkit.UniqueName(t, "s")
	if code, out, errOut := run(t, map[string]string{"DATABASE_URL_FILE": file}, "migrate", "--schema", schema); code != cli.ExitOK || !strings.Contains(out, "applied") {
		t.Errorf("migrate with DATABASE_URL_FILE: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := run(t, map[string]string{"DATABASE_URL_FILE": "/dev/zero"}, "migrate"); code != cli.ExitUsage || !strings.Contains(errOut, "DATABASE_URL_FILE") {
		t.Errorf("DATABASE_URL_FILE=/dev/zero: exit %d, %q", code, errOut)
	}
}
