package shipping_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The stack the tests run on: `eventline dev` (embedded Kafka, the
// enforcing schema registry, a throwaway PostgreSQL cluster), started the
// way a team starts it on a laptop, from the eventline module this module
// requires.
var (
	stack     = map[string]string{} // KAFKA_BROKERS, SCHEMA_REGISTRY_URL, DATABASE_URL
	eventline string                // the CLI binary
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shipping-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// PostgreSQL runs as its own user when the tests run as root: it must
	// be able to traverse the data dir's parents.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	eventline = filepath.Join(dir, "eventline")
	build := exec.Command("go", "build", "-o", eventline, "github.com/eventline/eventline/cmd/eventline")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building eventline:", err)
		return 1
	}
	dev := exec.Command(eventline, "dev", "--data-dir", filepath.Join(dir, "data"), "--kafka-port", "-1", "--registry-port", "-1")
	dev.Stderr = os.Stderr
	out, err := dev.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := dev.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting eventline dev:", err)
		return 1
	}
	defer func() {
		_ = dev.Process.Signal(syscall.SIGTERM)
		_ = dev.Wait()
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if ok && (k == "KAFKA_BROKERS" || k == "SCHEMA_REGISTRY_URL" || k == "DATABASE_URL") {
				stack[k] = v
				if len(stack) == 3 {
					ready <- nil
					_, _ = io.Copy(io.Discard, out)
					return
				}
			}
		}
		ready <- fmt.Errorf("eventline dev exited before printing its addresses: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case <-time.After(3 * time.Minute):
		fmt.Fprintln(os.Stderr, "eventline dev was not ready within 3 minutes")
		return 1
	}
	// EVENTLINE_TEST_KAFKA points the test at another broker (the
	// repository's `make test-kafka` runs it on Apache Kafka this way).
	if b := os.Getenv("EVENTLINE_TEST_KAFKA"); b != "" {
		stack["KAFKA_BROKERS"] = b
	}
	return m.Run()
}

// eventlineCLI runs the eventline command against the registry at
// registryURL (the stack's, or a test's own), as the team's CI would.
func eventlineCLI(t *testing.T, registryURL string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eventline, args...)
	cmd.Env = append(os.Environ(), "SCHEMA_REGISTRY_URL="+registryURL)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("eventline %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return string(b)
}
