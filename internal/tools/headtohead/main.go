// Command headtohead runs eventline's relay (poll and logical mode),
// Debezium's PostgreSQL connector with the outbox event router and
// Watermill's SQL forwarder on the same PostgreSQL and Kafka, with the same
// events, in interleaved rounds, and prints a table of their figures (and
// JSON with --json). docs/benchmarks/head-to-head.md says what it measures
// and how; `make bench-peers` starts the services and runs it.
//
// The services come from the environment: KAFKA_BROKERS, SCHEMA_REGISTRY_URL
// and DATABASE_URL (never a flag: it carries a password, and ps shows a
// process's arguments to every user). PostgreSQL must run on this machine
// with wal_level=logical (its CPU is read from /proc).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eventline/eventline/internal/bench"
)

func main() {
	var o bench.PeersOptions
	peers := flag.String("peers", strings.Join(bench.AllPeers, ","), "peers to run, comma-separated: "+strings.Join(bench.AllPeers, ", "))
	flag.IntVar(&o.Rounds, "rounds", 2, "interleaved rounds (each starts with the next peer)")
	flag.IntVar(&o.Events, "events", 1_000_000, "backlog each peer drains")
	flag.IntVar(&o.WatermillEvents, "watermill-events", 0, "Watermill's backlog (default --events)")
	flag.IntVar(&o.Aggregates, "aggregates", 1000, "distinct aggregates (record keys)")
	flag.IntVar(&o.Partitions, "partitions", 6, "partitions of each round's topic")
	flag.IntVar(&o.EventsPerTx, "events-per-tx", 100, "events per transaction of the backlog (eventline logical, Debezium, Watermill; eventline poll: one COPY)")
	flag.IntVar(&o.Rate, "rate", 1000, "live phase: events/s, one per transaction")
	flag.IntVar(&o.Writers, "writers", 8, "live phase: concurrent writers")
	flag.DurationVar(&o.Warmup, "warmup", 10*time.Second, "live phase: unmeasured lead-in (negative: none)")
	flag.DurationVar(&o.LiveFor, "live-for", 30*time.Second, "live phase: measured length")
	flag.IntVar(&o.BrokerWarmup, "broker-warmup", 200_000, "records produced and read back before the first round (negative: none)")
	flag.DurationVar(&o.DrainTimeout, "drain-timeout", 30*time.Minute, "give up a drain after this long")
	relayBin := flag.String("eventline", "bin/eventline", "the eventline binary (its relay subcommand runs)")
	flag.StringVar(&o.WatermillCommand, "watermill", "", "the bench/peers/watermill binary")
	flag.IntVar(&o.WatermillBatchSize, "watermill-batch-size", 1000, "Watermill: SubscribeBatchSize")
	flag.DurationVar(&o.WatermillPollInterval, "watermill-poll-interval", 10*time.Millisecond, "Watermill: PollInterval")
	flag.StringVar(&o.Connect.Libs, "connect-libs", os.Getenv("CONNECT_LIBS"), "Kafka Connect's jars (scripts/connect.sh fetch; env CONNECT_LIBS)")
	flag.StringVar(&o.Connect.PluginPath, "connect-plugin-path", os.Getenv("CONNECT_PLUGIN_PATH"), "plugin.path holding Debezium (env CONNECT_PLUGIN_PATH)")
	flag.StringVar(&o.Connect.Log4j, "connect-log4j", "scripts/connect/log4j2.properties", "the worker's log4j2 config")
	flag.StringVar(&o.Connect.RunDir, "connect-dir", "", "the worker's config, offsets and logs (default: a temporary directory)")
	flag.IntVar(&o.Connect.Port, "connect-port", 28083, "the worker's REST port on 127.0.0.1")
	flag.IntVar(&o.Connect.PollIntervalMs, "debezium-poll-interval-ms", 10, "Debezium: poll.interval.ms")
	flag.IntVar(&o.Connect.MaxBatchSize, "debezium-max-batch-size", 8192, "Debezium: max.batch.size")
	flag.IntVar(&o.Connect.MaxQueueSize, "debezium-max-queue-size", 0, "Debezium: max.queue.size (default 4 × max.batch.size)")
	flag.IntVar(&o.Connect.ProducerLingerMs, "connect-producer-linger-ms", 5, "Connect: producer.linger.ms")
	flag.IntVar(&o.Connect.ProducerBatchBytes, "connect-producer-batch-size", 262144, "Connect: producer.batch.size")
	flag.IntVar(&o.Connect.ProducerInFlight, "connect-producer-in-flight", 5, "Connect: producer.max.in.flight.requests.per.connection")
	brokerPIDFile := flag.String("broker-pid-file", "", "the Kafka broker's pid file (scripts/kafka.sh's run dir), for its CPU")
	jsonOut := flag.String("json", "", "also write the result as JSON to this file")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o.Logger = log
	o.Peers = strings.Split(*peers, ",")
	o.RelayCommand = []string{*relayBin, "relay"}
	if *brokerPIDFile != "" {
		b, err := os.ReadFile(*brokerPIDFile)
		if err == nil {
			o.BrokerPID, err = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if err != nil {
			fail("--broker-pid-file: %v", err)
		}
	}
	env := bench.Env{Brokers: strings.Split(os.Getenv("KAFKA_BROKERS"), ","), RegistryURL: os.Getenv("SCHEMA_REGISTRY_URL"), DatabaseURL: os.Getenv("DATABASE_URL")}
	if os.Getenv("KAFKA_BROKERS") == "" || env.RegistryURL == "" || env.DatabaseURL == "" {
		fail("set KAFKA_BROKERS, SCHEMA_REGISTRY_URL and DATABASE_URL (make bench-peers does)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := bench.Peers(ctx, env, o)
	if len(res.Runs) > 0 {
		printTable(os.Stdout, res)
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if werr := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); werr != nil {
			log.Error("writing the JSON", "err", werr)
		}
	}
	if err != nil {
		fail("%v", err)
	}
	// Each drain must deliver every event once.
	for _, r := range res.Runs {
		if r.Duplicates > 0 || r.Missing > 0 {
			fail("round %d, %s: %d duplicates and %d missing events in the drain", r.Round, r.Peer, r.Duplicates, r.Missing)
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "headtohead: "+format+"\n", args...)
	os.Exit(1)
}

// printTable prints one column per peer (Debezium's cold and warm JVM
// apart), each cell the range over the rounds, then every run.
func printTable(w io.Writer, res bench.PeersResult) {
	var cols []string
	runs := map[string][]bench.PeerRun{}
	for _, r := range res.Runs {
		c := r.Peer
		if r.Note != "" {
			c += " (" + r.Note + ")"
		}
		if _, ok := runs[c]; !ok {
			cols = append(cols, c)
		}
		runs[c] = append(runs[c], r)
	}
	slices.SortStableFunc(cols, func(a, b string) int { return strings.Compare(a, b) })
	rows := []struct {
		name string
		val  func(bench.PeerRun) float64
		prec int
	}{
		{"backlog drain, events/s (first record → all in Kafka)", func(r bench.PeerRun) float64 { return r.EventsPerSec }, 0},
		{"time to first record after start, s", func(r bench.PeerRun) float64 { return r.FirstRecordSeconds }, 2},
		{"peer CPU s per 100k events (drain)", func(r bench.PeerRun) float64 { return r.PeerCPUPer100k }, 2},
		{"PostgreSQL CPU s per 100k events (drain)", func(r bench.PeerRun) float64 { return r.PostgresCPUPer100k }, 2},
		{"broker CPU s per 100k events (drain)", func(r bench.PeerRun) float64 { return r.BrokerCPUPer100k }, 2},
		{"peer + PostgreSQL + broker CPU s per 100k", func(r bench.PeerRun) float64 {
			return r.PeerCPUPer100k + r.PostgresCPUPer100k + max(r.BrokerCPUPer100k, 0)
		}, 2},
		{"peer peak RSS, MiB", func(r bench.PeerRun) float64 { return r.PeakRSSMB }, 0},
		{"live: achieved events/s", func(r bench.PeerRun) float64 { return r.AchievedRate }, 0},
		{"live: commit → read p50, ms", func(r bench.PeerRun) float64 { return r.LiveP50Ms }, 1},
		{"live: commit → read p99, ms", func(r bench.PeerRun) float64 { return r.LiveP99Ms }, 1},
		{"live: commit → read p99.9, ms", func(r bench.PeerRun) float64 { return r.LiveP999Ms }, 1},
		{"duplicates / missing (drain)", nil, 0},
	}
	fmt.Fprintf(w, "\n%s\n\n| | %s |\n|---|%s\n", res.Machine, strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for _, row := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			if row.val == nil {
				var d, m int
				for _, r := range runs[c] {
					d, m = d+r.Duplicates, m+r.Missing
				}
				cells[i] = fmt.Sprintf("%d / %d", d, m)
				continue
			}
			lo, hi := row.val(runs[c][0]), row.val(runs[c][0])
			for _, r := range runs[c][1:] {
				lo, hi = min(lo, row.val(r)), max(hi, row.val(r))
			}
			cells[i] = strconv.FormatFloat(lo, 'f', row.prec, 64)
			if hi != lo && strconv.FormatFloat(hi, 'f', row.prec, 64) != cells[i] {
				cells[i] += "–" + strconv.FormatFloat(hi, 'f', row.prec, 64)
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", row.name, strings.Join(cells, " | "))
	}
	fmt.Fprintf(w, "\n| round | peer | events | drain s | events/s | first record s | peer CPU/100k | PG CPU/100k | broker CPU/100k | RSS MiB | live p50/p99/p99.9 ms | dup/missing |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.Runs {
		name := r.Peer
		if r.Note != "" {
			name += " (" + r.Note + ")"
		}
		fmt.Fprintf(w, "| %d | %s | %d | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.1f / %.1f / %.1f | %d / %d |\n",
			r.Round, name, r.Events, r.DrainSeconds, r.EventsPerSec, r.FirstRecordSeconds, r.PeerCPUPer100k, r.PostgresCPUPer100k,
			r.BrokerCPUPer100k, r.PeakRSSMB, r.LiveP50Ms, r.LiveP99Ms, r.LiveP999Ms, r.Duplicates, r.Missing)
	}
}
