package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/testkit"
)

// `bench consume` and `bench relay` run on a cluster that serves only TLS
// and SASL, with the settings from the environment (the password from a
// file), which their child processes (the measured consumer and relay)
// read again; the password never reaches a command line or the output.
func TestBenchOnSecuredCluster(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := testkit.BuildEventline(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	sc := testkit.SecureKafka(t)
	up := sc.Users["SCRAM-SHA-512"]
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(up[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(sc.Brokers, ","),
		"KAFKA_TLS_CA_FILE="+sc.CAFile, "KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME="+up[0], "KAFKA_SASL_PASSWORD_FILE="+pwFile,
		"SCHEMA_REGISTRY_URL="+testkit.Registry(t),
		"DATABASE_URL="+testkit.Postgres(t),
		"EVENTLINE_LOG_LEVEL=warn")
	bench := func(args ...string) map[string]any {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"bench"}, args...)...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("bench %s: %v\n%s", args[0], err, stderr.String())
		}
		if strings.Contains(stdout.String()+stderr.String(), up[1]) {
			t.Errorf("bench %s: the password is in the output", args[0])
		}
		var res map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("bench %s: not one JSON object: %v: %s", args[0], err, stdout.String())
		}
		return res
	}

	res := bench("consume", "--events", "2000", "--json")
	for _, k := range []string{"events_per_sec", "ceiling_events_per_sec", "ratio_to_ceiling", "max_rss_mb", "retry_lateness_p99_ms", "mean_batch_size", "deadlocks"} {
		if _, ok := res[k].(float64); !ok {
			t.Errorf("consume JSON lacks number %s: %v", k, res)
		}
	}
	if res["exactly_once"] != true || res["events"] != 2000.0 {
		t.Errorf("want exactly_once true over 2000 events: %v", res)
	}
	if n, _ := res["retry_failed_once"].(float64); n < 1 || res["retry_processed"] != n {
		t.Errorf("want every event that failed once processed from retry.1: %v", res)
	}

	res = bench("relay", "--events", "3000", "--batch-size", "500", "--rate", "200", "--latency-for", "500ms", "--json")
	if res["events"] != 3000.0 {
		t.Errorf("relay: want 3000 events drained: %v", res)
	}
	if v, _ := res["events_per_sec"].(float64); v <= 0 {
		t.Errorf("relay: no drain rate: %v", res)
	}
	res = bench("relay", "--mode", "logical", "--events", "3000", "--batch-size", "500", "--rate", "200", "--latency-for", "500ms", "--json")
	if res["events"] != 3000.0 || res["mode"] != "logical" {
		t.Errorf("relay --mode logical: want 3000 events drained in logical mode: %v", res)
	}
	if v, _ := res["ceiling_events_per_sec"].(float64); v <= 0 {
		t.Errorf("relay --mode logical: no ceiling: %v", res)
	}
}
