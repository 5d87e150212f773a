package cli

import (
	"context"
	"time"

	"github.com/eventline/eventline/health"
	"github.com/eventline/eventline/internal/telemetry"
)

// observability starts the process's telemetry: OTLP traces and metrics
// when OTEL_EXPORTER_OTLP_ENDPOINT is set, and /metrics, /healthz and
// /readyz on metricsAddr when it is not empty. stop flushes the exporters.
func observability(ctx context.Context, env *Env, service, metricsAddr string) (*telemetry.Telemetry, *health.Probes, func(), error) {
	t, err := telemetry.New(ctx, service, env.Getenv)
	if err != nil {
		return nil, nil, nil, err
	}
	probes := &health.Probes{}
	stopServer := func() {}
	stop := func() {
		stopServer()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			env.Logger.Warn("flushing telemetry", "err", err)
		}
	}
	if metricsAddr != "" {
		_, s, err := t.Serve(metricsAddr, probes, env.Logger)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		stopServer = s
	}
	return t, probes, stop, nil
}
