package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/bench"
	"github.com/eventline/eventline/relay"
)

func runBench(ctx context.Context, env *Env, args []string) int {
	if len(args) > 0 && args[0] == "consumer-process" {
		return runBenchConsumerProcess(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "e2e-group" {
		return runBenchE2EGroup(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "deploy-member" {
		return runBenchDeployMember(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "deploy" {
		return runBenchDeploy(ctx, env, args[1:])
	}
	if len(args) == 0 || (args[0] != "relay" && args[0] != "append" && args[0] != "consume" && args[0] != "e2e") {
		fmt.Fprintln(env.Stderr, "usage: eventline bench relay [--events N] [--mode poll|logical] [--json] | append [--mode poll|logical] [--json] | consume [--events N] [--json] | e2e [--rate R] [--duration D] [--mode poll|logical] [--json] | deploy [--scenarios rolling,scale,kill] [--choices classic,consumer,static] [--rate R] [--partitions N] [--kafka BROKERS] [--json]")
		return ExitUsage
	}
	what := args[0]
	fs := newFlagSet(env, "bench "+what, "[flags]")
	asJSON := fs.Bool("json", false, "print one JSON object")
	dataDir := fs.String("data-dir", "", "state directory of the embedded stack (default: a temporary one)")
	events := fs.Int("events", 1_000_000, "relay: pre-written events to drain; consume: pre-produced events to apply")
	batch := fs.Int("batch-size", relay.DefaultBatchSize, "relay: batch size")
	rate := fs.Int("rate", 2000, "relay: events/s of the live-latency phase; e2e: events/s appended")
	duration := fs.Duration("duration", 10*time.Second, "e2e: length of the measured load")
	latencyFor := fs.Duration("latency-for", 5*time.Second, "relay: length of the live-latency phase")
	writers := fs.Int("writers", 8, "append: concurrent writers")
	phase := fs.Duration("phase", 5*time.Second, "append: length of each measuring phase")
	noRelay := fs.Bool("without-relay", false, "append: run no relay during the measurement")
	partitions := fs.Int("partitions", 6, "consume: partitions of the benchmark topics")
	maxPoll := fs.Int("max-poll-records", 6000, "consume: the group's MaxPollRecords (records per poll, all partitions)")
	retryEvents := fs.Int("retry-events", 0, "consume: events of the retry phase (default min(events, 50000))")
	retryShare := fs.Float64("retry-share", 0.02, "consume: share of the retry phase's events that fail once")
	retryDelay := fs.Duration("retry-delay", 200*time.Millisecond, "consume: delay of retry.1 in the retry phase")
	transactions := fs.Bool("transactions", false, "relay, e2e: run the relay with --transactions")
	mode := fs.String("mode", string(relay.ModePoll), "relay, append, e2e: poll (the producer inserts outbox rows, the relay drains the table) or logical (the producer writes logical decoding messages, the relay streams a replication slot; needs wal_level=logical and REPLICATION)")
	if code := parse(fs, args[1:]); code >= 0 {
		return code
	}
	if *mode != string(relay.ModePoll) && *mode != string(relay.ModeLogical) {
		fmt.Fprintf(env.Stderr, "eventline bench: --mode %q: want poll or logical\n", *mode)
		return ExitUsage
	}
	if *mode != string(relay.ModePoll) && what == "consume" {
		fmt.Fprintln(env.Stderr, "eventline bench consume: --mode does not apply (the consumer reads Kafka)")
		return ExitUsage
	}
	if *events < 1 || *batch < 1 || *rate < 1 || *writers < 1 || *partitions < 1 || *maxPoll < 1 || *retryEvents < 0 || *retryDelay <= 0 ||
		*retryShare <= 0 || *retryShare >= 1 {
		fmt.Fprintln(env.Stderr, "eventline bench: counts must be positive (and --retry-share below 1)")
		return ExitUsage
	}
	benv, stop, ok := benchServices(ctx, env, *dataDir)
	if !ok {
		return ExitFail
	}
	defer stop()
	var out any
	switch what {
	case "relay":
		res, err := bench.Relay(ctx, benv, bench.RelayOptions{Events: *events, BatchSize: *batch, LatencyRate: *rate, LatencyFor: *latencyFor, Mode: relay.Mode(*mode), Transactional: *transactions, Logger: env.Logger})
		if err != nil {
			env.Logger.Error("bench relay failed", "err", err)
			return ExitFail
		}
		out = res
		if !*asJSON {
			ceiling := "SQL-only"
			if res.Mode == string(relay.ModeLogical) {
				ceiling = "decode-only"
			}
			mode := res.Mode
			if res.Transactional {
				mode += ", transactions"
			}
			fmt.Fprintf(env.Stdout, "relay drain (%s): %d events in %.2fs = %.0f events/s (%s ceiling %.0f events/s, ratio %.2f), batch %d\n",
				mode, res.Events, res.DrainSeconds, res.EventsPerSec, ceiling, res.CeilingEventsPerSec, res.RatioToCeiling, res.BatchSize)
			if res.Transactional {
				fmt.Fprintf(env.Stdout, "kafka transactions: %d, %.0f events and %.1f ms of the drain each\n", res.Transactions, res.EventsPerTransaction, res.MsPerTransaction)
			}
			fmt.Fprintf(env.Stdout, "live latency at %d events/s (%d events, %s): p50 %.1f ms, p99 %.1f ms\n", res.LatencyRate, res.LatencyEvents, res.LatencyMeasure, res.P50Ms, res.P99Ms)
			fmt.Fprintf(env.Stdout, "relay peak RSS: %.0f MiB; machine: %s\n", res.MaxRSSMB, res.Machine)
			return ExitOK
		}
	case "append":
		res, err := bench.Append(ctx, benv, bench.AppendOptions{Writers: *writers, Duration: *phase, Logger: env.Logger, WithoutRelay: *noRelay, Mode: relay.Mode(*mode)})
		if err != nil {
			env.Logger.Error("bench append failed", "err", err)
			return ExitFail
		}
		out = res
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "%d writers (%s): business-only %.0f tx/s, with one outbox event %.0f tx/s, ratio %.2f; machine: %s\n",
				res.Writers, res.Mode, res.BusinessOnlyTxPerSec, res.WithOutboxTxPerSec, res.Ratio, res.Machine)
			return ExitOK
		}
	case "e2e":
		if *duration <= 0 || *rate <= 0 || float64(*rate)*duration.Seconds() < 1 {
			fmt.Fprintln(env.Stderr, "eventline bench e2e: --rate and --duration must be positive, and make at least one event")
			return ExitUsage
		}
		res, err := bench.E2E(ctx, benv, bench.E2EOptions{Rate: *rate, Duration: *duration, Partitions: *partitions, Mode: relay.Mode(*mode), Transactional: *transactions, Logger: env.Logger})
		if err != nil {
			env.Logger.Error("bench e2e failed", "err", err)
			return ExitFail
		}
		out = res
		if !*asJSON {
			mode := res.Mode
			if res.Transactional {
				mode += ", transactions"
			}
			fmt.Fprintf(env.Stdout, "e2e (%s) at %d events/s (achieved %.0f), %d events: commit → in Kafka p50 %.1f / p99 %.1f / p999 %.1f ms; commit → applied p50 %.1f / p99 %.1f / p999 %.1f ms; machine: %s\n",
				mode, res.Rate, res.AchievedRate, res.Events, res.ToKafkaP50Ms, res.ToKafkaP99Ms, res.ToKafkaP999Ms, res.ToAppliedP50Ms, res.ToAppliedP99Ms, res.ToAppliedP999Ms, res.Machine)
			fmt.Fprintf(env.Stdout, "hops from commit, p50 / p99 / p999 ms: produced by the relay %.1f / %.1f / %.1f; readable %.1f / %.1f / %.1f; apply began %.1f / %.1f / %.1f; applied %.1f / %.1f / %.1f\n",
				res.ToProducedP50Ms, res.ToProducedP99Ms, res.ToProducedP999Ms, res.ToKafkaP50Ms, res.ToKafkaP99Ms, res.ToKafkaP999Ms,
				res.ToApplyStartP50Ms, res.ToApplyStartP99Ms, res.ToApplyStartP999Ms, res.ToAppliedP50Ms, res.ToAppliedP99Ms, res.ToAppliedP999Ms)
			roles := slices.Sorted(maps.Keys(res.CPUPer1000))
			var parts []string
			var total float64
			for _, r := range roles {
				parts = append(parts, fmt.Sprintf("%s %.3f", r, res.CPUPer1000[r]))
				total += res.CPUPer1000[r]
			}
			fmt.Fprintf(env.Stdout, "CPU seconds per 1,000 events: %s; total %.3f\n", strings.Join(parts, ", "), total)
			return ExitOK
		}
	case "consume":
		res, err := bench.Consume(ctx, benv, bench.ConsumeOptions{Events: *events, Partitions: *partitions, MaxPollRecords: *maxPoll,
			RetryEvents: *retryEvents, RetryShare: *retryShare, RetryDelay: *retryDelay, Logger: env.Logger})
		if err != nil {
			env.Logger.Error("bench consume failed", "err", err)
			return ExitFail
		}
		out = res
		if !*asJSON {
			fmt.Fprintf(env.Stdout, "consume: %d events in %.2fs = %.0f events/s (SQL-only ceiling %.0f events/s, ratio %.2f), %d partitions, mean batch %.0f\n",
				res.Events, res.Seconds, res.EventsPerSec, res.CeilingEventsPerSec, res.RatioToCeiling, res.Partitions, res.MeanBatchSize)
			fmt.Fprintf(env.Stdout, "retries: %d of %d events failed once (retry delay %.0f ms); lateness p99 %.1f ms; %d deadlocks\n",
				res.RetryFailedOnce, res.RetryEvents, res.RetryDelayMs, res.RetryLatenessP99Ms, res.Deadlocks)
			fmt.Fprintf(env.Stdout, "consumer peak RSS: %.0f MiB; every event applied exactly once: %v; machine: %s\n", res.MaxRSSMB, res.ExactlyOnce, res.Machine)
			return ExitOK
		}
	}
	if err := json.NewEncoder(env.Stdout).Encode(out); err != nil {
		return ExitFail
	}
	return ExitOK
}

// runBenchConsumerProcess is the hidden child of `bench consume`: the
// measured consumer, in a process of its own so its memory is its own. The
// spec comes in the environment (it holds the database URL), the report
// goes to stdout.
func runBenchConsumerProcess(ctx context.Context, env *Env, args []string) int {
	var spec bench.ConsumerSpec
	if code := childSpec(env, "consumer-process", "(run by bench consume)", args, bench.ConsumerSpecEnv, &spec, &spec.Env); code >= 0 {
		return code
	}
	rep, err := bench.ConsumerProcess(ctx, spec, env.Logger)
	if err != nil {
		env.Logger.Error("bench consumer process failed", "err", err)
		return ExitFail
	}
	if err := json.NewEncoder(env.Stdout).Encode(rep); err != nil {
		return ExitFail
	}
	return ExitOK
}

// runBenchDeploy is `eventline bench deploy`: deployment events of a
// consumer group (rolling restart, scaling, a killed member) under load,
// for each membership choice; see bench.Deploy.
func runBenchDeploy(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "bench deploy", "[flags]")
	asJSON := fs.Bool("json", false, "print one JSON object")
	dataDir := fs.String("data-dir", "", "state directory of the embedded stack (default: a temporary one)")
	kafka := fs.String("kafka", "", "measure on these brokers (comma-separated, e.g. an Apache Kafka cluster) instead of the embedded one; the embedded stack still provides PostgreSQL and the registry")
	scenarios := fs.String("scenarios", "rolling,scale,kill", "deployment events: rolling (restart every member in turn), scale (1 → max-members → 1), kill (SIGKILL one member, replace it)")
	choices := fs.String("choices", "classic,consumer,static", "membership choices: classic (cooperative-sticky), consumer (KIP-848), static (classic with instance ids kept across restarts)")
	rate := fs.Int("rate", 1000, "events/s produced throughout")
	partitions := fs.Int("partitions", 12, "partitions of the source topic")
	members := fs.Int("members", 4, "members of the rolling and kill scenarios")
	maxMembers := fs.Int("max-members", 6, "members at the top of the scale scenario")
	steady := fs.Duration("steady", 10*time.Second, "steady state measured before each event")
	settle := fs.Duration("settle", 5*time.Second, "load after each event")
	failShare := fs.Float64("fail-share", 0.01, "share of events failing their first attempt (through the retry chain)")
	session := fs.Duration("session-timeout", 45*time.Second, "the members' session timeout")
	hb := fs.Duration("heartbeat-interval", 0, "the members' heartbeat interval in the classic protocol (0: franz-go's 3 s)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *rate < 1 || *partitions < 1 || *members < 1 || *maxMembers < 2 || *steady <= 0 || *settle <= 0 || *failShare < 0 || *failShare >= 1 || *session <= 0 {
		fmt.Fprintln(env.Stderr, "eventline bench deploy: counts and durations must be positive, --max-members at least 2, --fail-share in [0, 1)")
		return ExitUsage
	}
	benv, stop, ok := benchServices(ctx, env, *dataDir)
	if !ok {
		return ExitFail
	}
	defer stop()
	if *kafka != "" {
		benv.Brokers = splitList(*kafka)
	}
	res, err := bench.Deploy(ctx, benv, bench.DeployOptions{Rate: *rate, Partitions: *partitions, Members: *members, MaxMembers: *maxMembers,
		Choices: splitList(*choices), Scenarios: splitList(*scenarios), Steady: *steady, Settle: *settle, FailShare: *failShare,
		SessionTimeout: *session, HeartbeatInterval: *hb, Logger: env.Logger})
	if err != nil {
		env.Logger.Error("bench deploy failed", "err", err)
		return ExitFail
	}
	if *asJSON {
		if err := json.NewEncoder(env.Stdout).Encode(res); err != nil {
			return ExitFail
		}
		return ExitOK
	}
	fmt.Fprintf(env.Stdout, "deployment events at %d events/s over %d partitions, %.0f%% failing once through the retry chain; machine: %s\n\n",
		res.Rate, res.Partitions, 100*res.FailShare, res.Machine)
	fmt.Fprintln(env.Stdout, "| event | membership | protocol | event s | longest restart s | longest stall, any partition ms | longest stall, partitions the member did not own ms | p99 steady ms | p99 during ms | rebalances | partitions moved | fetched again | applied twice | lost |")
	fmt.Fprintln(env.Stdout, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range res.Rows {
		fmt.Fprintf(env.Stdout, "| %s | %s | %s | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %d | %d | %d | %d | %d |\n",
			r.Scenario, r.Choice, r.Protocol, r.EventSeconds, r.MaxRestartSeconds, r.MaxStallMs, r.MaxStallOthersMs, r.SteadyP99Ms, r.EventP99Ms,
			r.Rebalances, r.PartitionsMoved, r.FetchedAgain, r.AppliedTwice, r.Lost)
	}
	return ExitOK
}

// runBenchDeployMember is the hidden child of `bench deploy`: one member
// of the measured group until SIGTERM. The spec comes in the environment
// (it holds the database URL); the lifecycle goes to stdout.
func runBenchDeployMember(ctx context.Context, env *Env, args []string) int {
	var spec bench.DeployMemberSpec
	if code := childSpec(env, "deploy-member", "(run by bench deploy)", args, bench.DeployMemberSpecEnv, &spec, &spec.Env); code >= 0 {
		return code
	}
	if err := bench.DeployMember(ctx, spec, env.Stdout, env.Logger); err != nil {
		env.Logger.Error("bench deploy member failed", "err", err)
		return ExitFail
	}
	return ExitOK
}

// runBenchE2EGroup is the hidden child of `bench e2e`: the measured
// consumer group, until its standard input closes. The spec comes in the
// environment (it holds the database URL); its lines go to stdout.
func runBenchE2EGroup(ctx context.Context, env *Env, args []string) int {
	var spec bench.E2EGroupSpec
	if code := childSpec(env, "e2e-group", "(run by bench e2e)", args, bench.E2EGroupSpecEnv, &spec, &spec.Env); code >= 0 {
		return code
	}
	if err := bench.E2EGroup(ctx, spec, os.Stdin, env.Stdout, env.Logger); err != nil {
		env.Logger.Error("bench e2e group failed", "err", err)
		return ExitFail
	}
	return ExitOK
}

// childSpec reads a benchmark child's flags (none) and its spec from the
// environment variable specEnv into spec; the connection settings come from
// the environment the parent passed on, as its own did (they may hold
// secrets: never in the spec), into benv. It returns an exit code, or -1 to
// go on.
func childSpec(env *Env, sub, usage string, args []string, specEnv string, spec any, benv *bench.Env) int {
	fs := newFlagSet(env, "bench "+sub, usage)
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if err := json.Unmarshal([]byte(env.Getenv(specEnv)), spec); err != nil {
		fmt.Fprintf(env.Stderr, "eventline bench %s: %s: %v\n", sub, specEnv, err)
		return ExitUsage
	}
	conn, err := connections(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "eventline bench %s: connection settings: %v\n", sub, err)
		return ExitUsage
	}
	benv.KafkaOpts, benv.RegistryOpts = conn.Kafka, conn.Registry
	return -1
}

// benchServices starts (or, from the environment, names) the stack a
// benchmark runs on; false when it failed (logged).
func benchServices(ctx context.Context, env *Env, dataDir string) (bench.Env, func(), bool) {
	svc, stop, err := servicesFor(ctx, env, dataDir)
	if err != nil {
		env.Logger.Error("embedded stack failed to start", "err", err)
		return bench.Env{}, nil, false
	}
	return bench.Env{Brokers: svc.brokers, RegistryURL: svc.registry, DatabaseURL: svc.db, KafkaOpts: svc.conn.Kafka, RegistryOpts: svc.conn.Registry}, stop, true
}
