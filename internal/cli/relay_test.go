package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
