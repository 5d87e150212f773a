package cli_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/testkit"
)

// pipelineFile writes an eventline.yaml holding content and returns its path.
func pipelineFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "eventline.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The relay publishes only what the pipeline routes, so it does not start
// without one: a missing file is a usage error naming it, not a relay that
// publishes to any topic a writer names.
func TestRelayNeedsThePipeline(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "none.yaml")
	code, _, errOut := run(t, map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/db", "KAFKA_BROKERS": "127.0.0.1:1", "EVENTLINE_CONFIG": missing}, "relay")
	if code != 2 || !strings.Contains(errOut, "none.yaml") || !strings.Contains(errOut, "publishes only what the pipeline file routes") {
		t.Fatalf("relay without a pipeline file: exit %d, %q", code, errOut)
	}
}

// Transactions: a malformed EVENTLINE_TRANSACTIONS and logical mode (not
// supported yet) are usage errors that say so.
func TestRelayTransactionsFlag(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "eventline.yaml")
	if err := os.WriteFile(cfg, []byte("topics: [{name: t, events: [a.B]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/db", "KAFKA_BROKERS": "127.0.0.1:1", "EVENTLINE_CONFIG": cfg}
	env := maps.Clone(base)
	env["EVENTLINE_TRANSACTIONS"] = "perhaps"
	if code, _, errOut := run(t, env, "relay"); code != 2 || !strings.Contains(errOut, "EVENTLINE_TRANSACTIONS") {
		t.Errorf("EVENTLINE_TRANSACTIONS=perhaps: exit %d, %q", code, errOut)
	}
}

// `relay parked list` prints what a writer chose (topic, event type,
// aggregate, the error quoting them) with terminal control characters
// escaped, in text and in --json.
func TestRelayParkedListEscapes(t *testing.T) {
	t.Parallel()
	f := testkit.Setup(t)
	if _, err := f.DB.Exec(context.Background(), `INSERT INTO eventline_outbox_parked (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, headers, created_at, error)
		VALUES (7, E'evil\x1b]0;pwned\x07', 'k', 'v', gen_random_uuid(), E'T\u202e', 'a', E'\x1b[2J', '[]', now(), E'not allowed: \x1b[31mred')`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": f.DatabaseURL}
	for _, args := range [][]string{{"relay", "parked", "list"}, {"relay", "parked", "list", "--json"}} {
		code, out, errOut := run(t, env, args...)
		if code != 0 || !strings.Contains(out, "evil") {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		if strings.ContainsAny(out, "\x1b\x07\u202e") {
			t.Errorf("%v: raw control characters in the output: %q", args, out)
		}
	}
}
