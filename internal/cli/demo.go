package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/eventline/eventline/internal/devstack"
	"github.com/eventline/eventline/internal/roundtrip"
)

// runDemo runs the foundation's round trip: on the services the environment
// names when KAFKA_BROKERS, SCHEMA_REGISTRY_URL and DATABASE_URL are all set,
// otherwise on an embedded stack in a fresh directory, stopped afterwards.
func runDemo(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "demo", "[flags]")
	records := fs.Int("records", 10, "records to send through the pipeline")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	dataDir := fs.String("data-dir", "", "state directory of the embedded stack (default: a temporary one, removed afterwards)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *records < 1 {
		fmt.Fprintln(env.Stderr, "eventline demo: --records must be at least 1")
		return ExitUsage
	}
	log := env.Logger

	stack, stop, err := servicesFor(ctx, env, *dataDir)
	if err != nil {
		log.Error("embedded stack failed to start", "err", err)
		return ExitFail
	}
	defer stop()
	brokers, registry, db := stack.brokers, stack.registry, stack.db

	start := time.Now()
	res, err := roundtrip.Run(ctx, roundtrip.Config{
		Brokers:     brokers,
		RegistryURL: registry,
		DatabaseURL: db,
		Records:     *records,
		Logger:      log,
	})
	if err != nil {
		log.Error("round trip failed", "err", err)
		return ExitFail
	}
	if *asJSON {
		out := map[string]any{
			"run_id":     res.RunID,
			"topic":      res.Topic,
			"subject":    res.Subject,
			"schema_id":  res.SchemaID,
			"group":      res.Group,
			"produced":   res.Produced,
			"consumed":   len(res.Received),
			"rows":       res.Rows,
			"elapsed_ms": time.Since(start).Milliseconds(),
			"ok":         res.Rows == res.Produced,
		}
		enc := json.NewEncoder(env.Stdout)
		if err := enc.Encode(out); err != nil {
			return ExitFail
		}
		return ExitOK
	}
	res.Print(env.Stdout)
	return ExitOK
}

// services are the addresses a command works against.
type services struct {
	brokers  []string
	registry string
	db       string
}

// servicesFor returns the services the environment names when
// KAFKA_BROKERS, SCHEMA_REGISTRY_URL and DATABASE_URL are all set, and
// otherwise starts an embedded stack (in dataDir, or a temporary directory
// removed afterwards). stop stops whatever was started.
func servicesFor(ctx context.Context, env *Env, dataDir string) (services, func(), error) {
	brokers, registry, db := env.Getenv("KAFKA_BROKERS"), env.Getenv("SCHEMA_REGISTRY_URL"), env.Getenv("DATABASE_URL")
	if brokers != "" && registry != "" && db != "" {
		return services{splitList(brokers), registry, db}, func() {}, nil
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
	return services{splitList(stack.Brokers()), stack.RegistryURL(), stack.DatabaseURL()}, stop, nil
}
