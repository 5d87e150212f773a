// Package telemetry sets up what the CLI's long-running commands export:
// traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, metrics for a Prometheus
// scrape endpoint and, with the same variables, over OTLP, and the
// /healthz and /readyz endpoints deployments probe.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/health"
)

// Telemetry is one process's providers.
type Telemetry struct {
	// TracerProvider is nil unless OTLP tracing is configured: the
	// pipeline then passes trace context through without making spans.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	registry       *prometheus.Registry
	shutdown       []func(context.Context) error
}

// OTLPConfigured reports whether the environment names an OTLP endpoint
// for traces.
func OTLPConfigured(getenv func(string) string) bool {
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// New builds the providers for service (OTEL_SERVICE_NAME overrides it).
// The OTLP exporters read the standard OTEL_EXPORTER_OTLP_* variables.
func New(ctx context.Context, service string, getenv func(string) string) (*Telemetry, error) {
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		service = name
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil {
		res = resource.Default()
	}
	t := &Telemetry{registry: prometheus.NewRegistry()}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if OTLPConfigured(getenv) {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(signalURL(getenv, "TRACES", "/v1/traces")))
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.TracerProvider = tp
		t.shutdown = append(t.shutdown, tp.Shutdown)
		otel.SetTracerProvider(tp)
	}
	prom, err := promexp.New(promexp.WithRegisterer(t.registry), promexp.WithoutScopeInfo(), promexp.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(prom), sdkmetric.WithResource(res)}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
		mexp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(signalURL(getenv, "METRICS", "/v1/metrics")))
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp)))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return t, nil
}

// signalURL is the OTLP/HTTP URL of one signal, from getenv (not the
// process environment, which the exporters would read): the signal's own
// variable verbatim, else the base endpoint plus the signal's path, as the
// OTLP exporter specification says.
func signalURL(getenv func(string) string, signal, path string) string {
	if u := getenv("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"); u != "" {
		return u
	}
	return strings.TrimRight(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/") + path
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Serve listens on addr and serves /metrics, /healthz and /readyz until
// stop is called. It returns the bound address (addr may use port 0).
func (t *Telemetry) Serve(addr string, probes *health.Probes, log *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics endpoint %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{}))
	ph := probes.Handler()
	mux.Handle("GET /healthz", ph)
	mux.Handle("GET /readyz", ph)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}, nil
}

// Getenv is os.Getenv, for callers without an environment of their own.
var Getenv = os.Getenv
