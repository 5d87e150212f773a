package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/testkit"
)

// `eventline bench consume` end to end on testkit's services (kfake): the
// built command runs its consumer child process, and its --json carries
// every field of the contract with the exactly-once check passed. Figures
// come from full runs, not from here.
func TestBenchConsumeJSON(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := testkit.BuildEventline(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	cmd := exec.Command(bin, "bench", "consume", "--events", "2000", "--json")
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(testkit.Kafka(t), ","),
		"SCHEMA_REGISTRY_URL="+testkit.Registry(t),
		"DATABASE_URL="+testkit.Postgres(t),
		"EVENTLINE_LOG_LEVEL=warn")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench consume: %v\n%s", err, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("not one JSON object: %v: %s", err, stdout.String())
	}
	for _, k := range []string{"events_per_sec", "ceiling_events_per_sec", "ratio_to_ceiling", "max_rss_mb", "retry_lateness_p99_ms", "mean_batch_size", "deadlocks"} {
		if _, ok := res[k].(float64); !ok {
			t.Errorf("JSON lacks number %s: %s", k, stdout.String())
		}
	}
	if res["exactly_once"] != true || res["events"] != 2000.0 {
		t.Errorf("want exactly_once true over 2000 events: %s", stdout.String())
	}
	if n, _ := res["retry_failed_once"].(float64); n < 1 || res["retry_processed"] != n {
		t.Errorf("want every event that failed once processed from retry.1: %s", stdout.String())
	}
}
