package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/eventline/eventline/internal/bench"
	"github.com/eventline/eventline/relay"
)

func runBench(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || (args[0] != "relay" && args[0] != "append") {
		fmt.Fprintln(env.Stderr, "usage: eventline bench relay [--events N] [--json] | append [--json]")
		return ExitUsage
	}
	what := args[0]
	fs := newFlagSet(env, "bench "+what, "[flags]")
	asJSON := fs.Bool("json", false, "print one JSON object")
	dataDir := fs.String("data-dir", "", "state directory of the embedded stack (default: a temporary one)")
	events := fs.Int("events", 1_000_000, "relay: pre-written events to drain")
	batch := fs.Int("batch-size", relay.DefaultBatchSize, "relay: batch size")
	rate := fs.Int("rate", 2000, "relay: events/s of the live-latency phase")
	latencyFor := fs.Duration("latency-for", 5*time.Second, "relay: length of the live-latency phase")
	writers := fs.Int("writers", 8, "append: concurrent writers")
	phase := fs.Duration("phase", 5*time.Second, "append: length of each measuring phase")
	noNotify := fs.Bool("without-notify", false, "append: diagnostic run with the outbox NOTIFY trigger disabled")
	noRelay := fs.Bool("without-relay", false, "append: run no relay during the measurement")
	if code := parse(fs, args[1:]); code >= 0 {
		return code
	}
	if *events < 1 || *batch < 1 || *rate < 1 || *writers < 1 {
		fmt.Fprintln(env.Stderr, "eventline bench: counts must be positive")
		return ExitUsage
	}
	svc, stop, err := servicesFor(ctx, env, *dataDir)
	if err != nil {
		env.Logger.Error("embedded stack failed to start", "err", err)
		return ExitFail
	}
	defer stop()
	benv := bench.Env{Brokers: svc.brokers, RegistryURL: svc.registry, DatabaseURL: svc.db}
	var out any
	switch what {
	case "relay":
		res, err := bench.Relay(ctx, benv, bench.RelayOptions{Events: *events, BatchSize: *batch, LatencyRate: *rate, LatencyFor: *latencyFor, Logger: env.Logger})
		if err != nil {
			env.Logger.Error("bench relay failed", "err", err)
			return ExitFail
		}
		out = res
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "relay drain: %d events in %.2fs = %.0f events/s (SQL-only ceiling %.0f events/s, ratio %.2f), batch %d\n",
				res.Events, res.DrainSeconds, res.EventsPerSec, res.CeilingEventsPerSec, res.RatioToCeiling, res.BatchSize)
			fmt.Fprintf(env.Stdout, "live latency at %d events/s (%d events, %s): p50 %.1f ms, p99 %.1f ms\n", res.LatencyRate, res.LatencyEvents, res.LatencyMeasure, res.P50Ms, res.P99Ms)
			fmt.Fprintf(env.Stdout, "relay peak RSS: %.0f MiB; machine: %s\n", res.MaxRSSMB, res.Machine)
			return ExitOK
		}
	case "append":
		res, err := bench.Append(ctx, benv, bench.AppendOptions{Writers: *writers, Duration: *phase, Logger: env.Logger, WithoutNotify: *noNotify, WithoutRelay: *noRelay})
		if err != nil {
			env.Logger.Error("bench append failed", "err", err)
			return ExitFail
		}
		out = res
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "%d writers: business-only %.0f tx/s, with one outbox event %.0f tx/s, ratio %.2f; machine: %s\n",
				res.Writers, res.BusinessOnlyTxPerSec, res.WithOutboxTxPerSec, res.Ratio, res.Machine)
			return ExitOK
		}
	}
	if err := json.NewEncoder(env.Stdout).Encode(out); err != nil {
		return ExitFail
	}
	return ExitOK
}
