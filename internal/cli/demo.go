package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/eventline/eventline/connection"
	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/demo"
	"github.com/eventline/eventline/internal/devstack"
)

// runDemo runs the orders/inventory saga (internal/demo): on the services
// the environment names when KAFKA_BROKERS, SCHEMA_REGISTRY_URL and
// DATABASE_URL are all set, otherwise on an embedded stack in a fresh
// directory, stopped afterwards. Exit 1 when an invariant fails.
func runDemo(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "demo", "[flags]")
	orders := fs.Int("orders", 1000, "orders to place")
	poison := fs.Int("poison", 3, "garbage records to inject into orders.events (they must end in the DLT)")
	rate := fs.Int("rate", 0, "place this many orders per second (0: as fast as 8 clients can, which saturates the machine)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	dataDir := fs.String("data-dir", "", "state directory of the embedded stack (default: a temporary one, removed afterwards)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up waiting for the orders to settle after this long")
	quiet := fs.Bool("quiet", false, "no progress line")
	prefix := fs.String("prefix", "", "put this before every topic and consumer group name (several demos on one cluster)")
	metricsAddr := fs.String("metrics-addr", env.Getenv("EVENTLINE_METRICS_ADDR"), "serve /metrics (Prometheus), /healthz and /readyz on this address while the demo runs (env EVENTLINE_METRICS_ADDR)")
	protocol := fs.String("group-protocol", env.Getenv("EVENTLINE_GROUP_PROTOCOL"), "the consumer groups' protocol: classic (cooperative-sticky, the default), consumer (KIP-848) or auto (env EVENTLINE_GROUP_PROTOCOL)")
	instanceID := fs.String("instance-id", env.Getenv("EVENTLINE_INSTANCE_ID"), "static membership: this process's instance id in both groups, stable across restarts (a StatefulSet pod name); classic protocol only (env EVENTLINE_INSTANCE_ID)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	proto, err := consumers.ParseProtocol(*protocol)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline demo: --group-protocol:", err)
		return ExitUsage
	}
	if *orders < 1 || *poison < 0 || *timeout <= 0 || *rate < 0 {
		fmt.Fprintln(env.Stderr, "eventline demo: --orders must be at least 1, --poison and --rate not negative, --timeout positive")
		return ExitUsage
	}
	log := env.Logger

	stack, stop, err := servicesFor(ctx, env, *dataDir)
	if err != nil {
		log.Error("embedded stack failed to start", "err", err)
		return ExitFail
	}
	defer stop()

	tel, probes, stopTel, err := observability(ctx, env, "eventline-demo", *metricsAddr)
	if err != nil {
		log.Error("telemetry", "err", err)
		return ExitFail
	}
	defer stopTel()
	cfg := demo.Config{
		Brokers: stack.brokers, RegistryURL: stack.registry, DatabaseURL: stack.db, KafkaOpts: stack.conn.Kafka, RegistryOpts: stack.conn.Registry,
		Protocol: proto, InstanceID: *instanceID,
		Orders: *orders, Poison: *poison, Rate: *rate, Timeout: *timeout, Logger: log, Prefix: *prefix,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Health: probes,
	}
	if !*quiet && !*asJSON {
		cfg.Progress = env.Stderr
	}
	res, err := demo.Run(ctx, cfg)
	if err != nil {
		log.Error("demo failed", "err", err)
		return ExitFail
	}
	if *asJSON {
		if err := json.NewEncoder(env.Stdout).Encode(res); err != nil {
			return ExitFail
		}
	} else {
		printDemo(env.Stdout, res)
	}
	if !res.InvariantsOK {
		return ExitFail
	}
	return ExitOK
}

func printDemo(w io.Writer, r *demo.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "orders placed\t%d\n", r.Orders)
	fmt.Fprintf(tw, "  confirmed\t%d\n", r.Confirmed)
	fmt.Fprintf(tw, "  cancelled\t%d (%d out of stock, %d payment declined: reservation released)\n", r.Cancelled, r.Cancelled-r.Declined, r.Declined)
	fmt.Fprintf(tw, "  still pending\t%d\n", r.Pending)
	fmt.Fprintf(tw, "events retried (retry topics)\t%d\n", r.Retried)
	fmt.Fprintf(tw, "records dead-lettered\t%d\n", r.DeadLettered)
	fmt.Fprintf(tw, "redeliveries skipped (dedupe)\t%d\n", r.Duplicates)
	fmt.Fprintf(tw, "elapsed\t%.1f s (%.0f orders/s)\n", r.Elapsed, r.OrdersPerSec)
	fmt.Fprintf(tw, "order → terminal latency\tp50 %.0f ms, p99 %.0f ms\n", r.P50ms, r.P99ms)
	if h, ok := r.Hops["order_to_reservation"]; ok {
		fmt.Fprintf(tw, "  order → reservation\tp50 %.0f ms, p99 %.0f ms\n", h[0], h[1])
	}
	if h, ok := r.Hops["reservation_to_terminal"]; ok {
		fmt.Fprintf(tw, "  reservation → terminal\tp50 %.0f ms, p99 %.0f ms\n", h[0], h[1])
	}
	names := make([]string, 0, len(r.Invariants))
	for k := range r.Invariants {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		mark := "ok"
		if !r.Invariants[k] {
			mark = "FAILED"
		}
		fmt.Fprintf(tw, "invariant %s\t%s\n", k, mark)
	}
	tw.Flush()
	if r.InvariantsOK {
		fmt.Fprintln(w, "all invariants hold")
	} else {
		fmt.Fprintf(w, "INVARIANTS FAILED (details: %v)\n", r.Details)
	}
}

// services are the addresses a command works against, and the connection
// settings (TLS, SASL, registry auth) the environment gives for them.
type services struct {
	brokers  []string
	registry string
	db       string
	conn     connection.Settings
}

// servicesFor returns the services the environment names when
// KAFKA_BROKERS, SCHEMA_REGISTRY_URL and DATABASE_URL are all set, and
// otherwise starts an embedded stack (in dataDir, or a temporary directory
// removed afterwards). stop stops whatever was started.
func servicesFor(ctx context.Context, env *Env, dataDir string) (services, func(), error) {
	db, err := databaseURL(env, "")
	if err != nil {
		return services{}, nil, err
	}
	brokers, registry := env.Getenv("KAFKA_BROKERS"), env.Getenv("SCHEMA_REGISTRY_URL")
	if brokers != "" && registry != "" && db != "" {
		conn, err := connections(env)
		if err != nil {
			return services{}, nil, fmt.Errorf("connection settings: %w", err)
		}
		if _, err := conn.RegistryClient(registry); err != nil { // refuses credentials in the URL
			return services{}, nil, err
		}
		return services{splitList(brokers), registry, db, conn}, func() {}, nil
	}
	log := env.Logger
	dir := dataDir
	cleanup := func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "eventline-stack-")
		if err != nil {
			return services{}, nil, err
		}
		// The postgres user (when run as root) must traverse it.
		if err := os.Chmod(tmp, 0o711); err != nil {
			os.RemoveAll(tmp)
			return services{}, nil, err
		}
		dir = tmp
		cleanup = func() { os.RemoveAll(tmp) }
	}
	log.Info("starting the embedded stack (set KAFKA_BROKERS, SCHEMA_REGISTRY_URL and DATABASE_URL to use your own)", "data_dir", dir)
	stack, err := devstack.Start(ctx, devstack.Config{DataDir: dir, KafkaPort: -1, RegistryPort: -1, Logger: log})
	if err != nil {
		cleanup()
		return services{}, nil, err
	}
	stop := func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := stack.Stop(stopCtx); err != nil {
			log.Error("stopping embedded stack", "err", err)
		}
		cleanup()
	}
	return services{splitList(stack.Brokers()), stack.RegistryURL(), stack.DatabaseURL(), connection.Settings{}}, stop, nil
}
