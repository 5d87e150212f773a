package eventlinetest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/registry"
)

// Registry is an enforcing, Confluent-compatible schema registry (package
// registry, state in memory) serving on a loopback address for one test.
type Registry struct {
	url    string
	client *sr.Client
}

// StartRegistry starts a Registry for tb, closed when tb ends. Unlike
// franz-go's srfake it enforces each subject's compatibility level
// (BACKWARD unless set otherwise): registering an incompatible version
// fails with HTTP 409, which registry.IsIncompatible recognises. Each call
// starts an empty registry; schema ids start at 1. Its log (one line per
// registered schema) goes to tb's log.
func StartRegistry(tb testing.TB) *Registry {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(tbWriter{tb}, nil)).With("component", "eventlinetest registry")
	reg, err := registry.New(context.Background(), registry.Config{Store: &registry.MemoryStore{}, Logger: logger})
	if err != nil {
		tb.Fatalf("eventlinetest: error starting the schema registry: %v", err)
		return nil
	}
	srv := httptest.NewServer(reg.Handler())
	// Close waits for the requests in flight, so nothing logs to tb after
	// it ends.
	tb.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		tb.Fatalf("eventlinetest: error creating the registry client: %v", err)
		return nil
	}
	return &Registry{url: srv.URL, client: cl}
}

// URL is the registry's base URL (http://127.0.0.1:port), for
// SCHEMA_REGISTRY_URL or sr.URLs.
func (r *Registry) URL() string { return r.url }

// Client is a franz-go schema registry client of the registry, e.g. for a
// producer's Registry or an sr.Serde.
func (r *Registry) Client() *sr.Client { return r.client }

// tbWriter writes log lines to a test's log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
