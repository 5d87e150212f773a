package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BuildEventline builds the eventline command into a temporary directory
// (with the race detector when race is set) for tests that run it as a
// child process. cleanup removes it.
func BuildEventline(race bool) (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "eventline-bin-")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "eventline")
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/eventline/eventline/cmd/eventline")...)
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building eventline: %w\n%s", err, out)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// WaitFor polls cond until it holds, failing t after limit: for progress
// that is observable only from outside (a process's output, a table).
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a child's
// stderr, a logger) and readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WithoutEnv returns env without the variable key.
func WithoutEnv(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// HasLine reports whether a line of s (a captured log) contains every one
// of parts.
func HasLine(s string, parts ...string) bool { return CountLines(s, parts...) > 0 }

// CountLines counts the lines of s that contain every one of parts.
func CountLines(s string, parts ...string) int {
	n := 0
	for line := range strings.Lines(s) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// FuzzHeaders turns "k=v" lines into record headers, for fuzz targets: the
// fuzzer mutates one string rather than a list, and may repeat a key.
func FuzzHeaders(s string) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return hs
}
