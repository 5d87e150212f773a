package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/eventline/eventline/health"
	"github.com/eventline/eventline/internal/telemetry"
)

// With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics leave over
// OTLP/HTTP to it; without it there is no tracer provider and the
// Prometheus endpoint still serves.
func TestOTLPExportAndEndpoints(t *testing.T) {
	var mu sync.Mutex
	paths := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
	}))
	defer collector.Close()
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SERVICE_NAME": "test-svc"}
	tel, err := telemetry.New(context.Background(), "eventline-test", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if tel.TracerProvider == nil {
		t.Fatal("no tracer provider although an OTLP endpoint is set")
	}
	_, span := tel.TracerProvider.Tracer("t").Start(context.Background(), "op")
	span.End()
	c, _ := tel.MeterProvider.Meter("t").Int64Counter("eventline_test_things")
	c.Add(context.Background(), 3)

	probes := &health.Probes{}
	addr, stop, err := tel.Serve("127.0.0.1:0", probes, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no component") {
		t.Errorf("/readyz without checks: %d %q", code, body)
	}
	thing := &component{ready: io.ErrUnexpectedEOF}
	probes.Add("thing", thing)
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "thing: unexpected EOF") {
		t.Errorf("/readyz failing: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz of a live component that is not ready: %d", code)
	}
	thing.ready = nil
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz passing: %d", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "eventline_test_things_total 3") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	thing.live = io.ErrClosedPipe
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "thing: io: read/write on closed pipe") {
		t.Errorf("/healthz of a component that is not live: %d %q", code, body)
	}
	stop()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if paths["/v1/traces"] == 0 || paths["/v1/metrics"] == 0 {
		t.Errorf("the collector received %v, want /v1/traces and /v1/metrics", paths)
	}

	plain, err := telemetry.New(context.Background(), "x", func(string) string { return "" })
	if err != nil || plain.TracerProvider != nil {
		t.Errorf("without OTLP: tracer provider %v, err %v", plain.TracerProvider, err)
	}
}

// component answers the probes with what the test sets (read by the
// server's goroutine after the test's writes, each followed by a request).
type component struct{ live, ready error }

func (c *component) Live() error  { return c.live }
func (c *component) Ready() error { return c.ready }
