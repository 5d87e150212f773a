package cli

import (
	"github.com/eventline/eventline/internal/dsn"

	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/relay"
)

func runRelay(ctx context.Context, env *Env, args []string) int {
	if len(args) > 0 && args[0] == "parked" {
		return runRelayParked(ctx, env, args[1:])
	}
	fs := newFlagSet(env, "relay", "[flags] | parked list|requeue ID")
	dbURL := fs.String("database-url", "", databaseURLUsage)
	brokers := fs.String("brokers", env.Getenv("KAFKA_BROKERS"), "Kafka seed brokers, comma-separated (env KAFKA_BROKERS)")
	schema := fs.String("schema", envOr(env, "EVENTLINE_SCHEMA", migrate.DefaultSchema), "PostgreSQL schema of the outbox (env EVENTLINE_SCHEMA)")
	cfgPath := fs.String("config", envOr(env, "EVENTLINE_CONFIG", pipeline.DefaultPath), "pipeline file (env EVENTLINE_CONFIG): the topics to create or check, and the only topics and event types the relay publishes")
	batch := fs.Int("batch-size", relay.DefaultBatchSize, "rows per batch")
	batchBytes := fs.Int("batch-bytes", relay.DefaultBatchBytes, "key and value bytes per batch (at least one row): bounds the relay's memory for large events")
	retention := fs.Duration("retention", 0, "keep published rows this long (marking them) instead of deleting them; 0 deletes")
	poll := fs.Duration("poll-interval", 2*time.Second, "drain from the outbox's lowest id at least this often (finds rows of long transactions)")
	probe := fs.Duration("probe-interval", 50*time.Millisecond, "longest wait between probes for new rows while idle")
	linger := fs.Duration("linger", 0, "how long events gather before they are sent: poll mode's pause between drains while rows arrive, logical mode's producer linger; longer costs latency and saves work per event (default 2ms in poll mode, 4ms in logical)")
	modeFlag := fs.String("mode", envOr(env, "EVENTLINE_MODE", string(relay.ModePoll)), "poll (drain the outbox table) or logical (stream the producers' messages from a replication slot; needs wal_level=logical and REPLICATION) (env EVENTLINE_MODE)")
	slot := fs.String("slot", env.Getenv("EVENTLINE_SLOT"), "logical mode's replication slot (env EVENTLINE_SLOT; default eventline_<database>_<schema>)")
	recreate := fs.Bool("recreate-slot", false, "logical mode: replace an invalidated or lost slot; the events in between are NOT delivered (logged): see docs/operations.md")
	status := fs.Duration("status-interval", time.Second, "logical mode: how often the confirmed position is reported to PostgreSQL")
	allowPublicEmit := fs.Bool("allow-public-emit", false, "logical mode: stream although every database role may execute pg_logical_emit_message (any role could write events); only where its privileges cannot be changed: see docs/operations.md")
	heartbeat := fs.Duration("heartbeat-interval", 10*time.Second, "logical mode: write a heartbeat after this long without events, so the slot advances on a quiet database")
	txnDefault, err := envBool(env, "EVENTLINE_TRANSACTIONS")
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay:", err)
		return ExitUsage
	}
	transactions := fs.Bool("transactions", txnDefault, "publish each batch in a Kafka transaction with the relay's position, so read_committed consumers see each event once across crashes and a deposed leader is fenced (env EVENTLINE_TRANSACTIONS)")
	txnID := fs.String("transactional-id", env.Getenv("EVENTLINE_TRANSACTIONAL_ID"), "with --transactions: the transactional.id (env EVENTLINE_TRANSACTIONAL_ID; default eventline-relay.<database>.<schema>.<mode>)")
	doMigrate := fs.Bool("migrate", false, "apply migrations before starting")
	metricsAddr := fs.String("metrics-addr", env.Getenv("EVENTLINE_METRICS_ADDR"), "serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. :9464 (env EVENTLINE_METRICS_ADDR)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *poll <= 0 || *probe <= 0 || *linger < 0 || *status <= 0 || *heartbeat <= 0 {
		fmt.Fprintln(env.Stderr, "eventline relay: --poll-interval, --probe-interval, --linger, --status-interval and --heartbeat-interval must be positive")
		return ExitUsage
	}
	mode, err := migrate.ParseMode(*modeFlag)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay: --mode:", err)
		return ExitUsage
	}
	db, err := databaseURL(env, *dbURL)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay:", err)
		return ExitUsage
	}
	*dbURL = db
	if *dbURL == "" || *brokers == "" {
		fmt.Fprintln(env.Stderr, "eventline relay: needs --database-url (DATABASE_URL) and --brokers (KAFKA_BROKERS)")
		return ExitUsage
	}
	conn, err := connections(env)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay: connection settings:", err)
		return ExitUsage
	}
	// The pipeline is the relay's publishing policy: without it, it would
	// publish to whatever topic a writer names.
	pipe, err := pipeline.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(env.Stderr, "eventline relay: %v (the relay publishes only what the pipeline file routes; --config or EVENTLINE_CONFIG)\n", err)
		return ExitUsage
	}
	topics := pipe.Topics
	log := env.Logger
	if *doMigrate {
		pool, err := pgxpool.New(ctx, *dbURL)
		if err == nil {
			_, err = migrate.Migrate(ctx, pool, migrate.Options{Schema: *schema})
			pool.Close()
		}
		if err != nil {
			log.Error("migration failed", "url", dsn.Redact(*dbURL), "err", err)
			return ExitFail
		}
	}
	tel, probes, stopTel, err := observability(ctx, env, "eventline-relay", *metricsAddr)
	if err != nil {
		log.Error("telemetry", "err", err)
		return ExitFail
	}
	defer stopTel()
	r, err := relay.New(relay.Config{
		DatabaseURL: *dbURL, Brokers: splitList(*brokers), Schema: *schema, Pipeline: pipe,
		BatchSize: *batch, BatchBytes: *batchBytes, Retention: *retention, PollInterval: *poll, ProbeInterval: *probe, Linger: *linger, Logger: log,
		Mode: mode, Slot: *slot, RecreateSlot: *recreate, AllowPublicEmit: *allowPublicEmit, StatusInterval: *status, HeartbeatInterval: *heartbeat,
		TracerProvider: tel.TracerProvider, KafkaOpts: conn.Kafka, Transactional: *transactions, TransactionalID: *txnID,
	})
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay:", err)
		return ExitUsage
	}
	defer r.Close()
	if err := r.RegisterMetrics(tel.MeterProvider); err != nil {
		log.Error("relay metrics", "err", err)
		return ExitFail
	}
	probes.Add("relay "+*schema, r)
	log.Info("relay starting", "schema", *schema, "brokers", *brokers, "topics", len(topics))
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s := r.Stats()
				backlog, oldest, err := r.Backlog(ctx)
				if err != nil && ctx.Err() == nil {
					log.Warn("relay: reading the backlog", "err", err)
				}
				attrs := []any{"leader", s.Leader, "published", s.Published, "parked", s.Parked, "batches", s.Batches,
					"last_batch", s.LastBatch, "backlog", backlog, "oldest_unpublished_age", oldest.Round(time.Millisecond)}
				if mode == relay.ModeLogical {
					if lag, err := r.SlotLag(ctx); err == nil {
						attrs = append(attrs, "slot_lag_bytes", lag.Bytes, "slot_retained_bytes", lag.Retained, "slot_lag_age", lag.Age.Round(time.Millisecond), "slot_wal_status", lag.WALStatus)
					} else if ctx.Err() == nil {
						log.Warn("relay: reading the slot's lag", "err", err)
					}
				}
				log.Info("relay stats", attrs...)
			}
		}
	}()
	if err := r.Run(ctx); err != nil {
		log.Error("relay stopped", "err", err)
		return ExitFail
	}
	<-statsDone
	s := r.Stats()
	log.Info("relay stopped", "published", s.Published, "parked", s.Parked)
	return ExitOK
}

func runRelayParked(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "requeue") {
		fmt.Fprintln(env.Stderr, "usage: eventline relay parked list [--json] | requeue ID [ID …]")
		return ExitUsage
	}
	sub := args[0]
	fs := newFlagSet(env, "relay parked "+sub, "")
	dbURL := fs.String("database-url", "", databaseURLUsage)
	schema := fs.String("schema", envOr(env, "EVENTLINE_SCHEMA", migrate.DefaultSchema), "PostgreSQL schema of the outbox (env EVENTLINE_SCHEMA)")
	asJSON := fs.Bool("json", false, "list as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return ExitUsage
	}
	var ids []int64
	if sub == "requeue" {
		if fs.NArg() == 0 {
			fmt.Fprintln(env.Stderr, "eventline relay parked requeue: name the parked row ids")
			return ExitUsage
		}
		for _, a := range fs.Args() {
			id, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				fmt.Fprintf(env.Stderr, "eventline relay parked requeue: %q is not a row id\n", a)
				return ExitUsage
			}
			ids = append(ids, id)
		}
	} else if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "eventline relay parked list: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	db, err := databaseURL(env, *dbURL)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay parked:", err)
		return ExitUsage
	}
	*dbURL = db
	if *dbURL == "" {
		fmt.Fprintln(env.Stderr, "eventline relay parked: needs --database-url (DATABASE_URL)")
		return ExitUsage
	}
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline relay parked:", err)
		return ExitUsage
	}
	defer pool.Close()
	if sub == "list" {
		rows, err := relay.ListParked(ctx, pool, *schema)
		if err != nil {
			env.Logger.Error("listing parked rows", "url", dsn.Redact(*dbURL), "err", err)
			return ExitFail
		}
		if *asJSON {
			if rows == nil {
				rows = []relay.Parked{}
			}
			b, _ := json.Marshal(rows) // strings, numbers and times: cannot fail
			fmt.Fprintf(env.Stdout, "%s\n", safeJSON(b))
			return ExitOK
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTOPIC\tEVENT TYPE\tAGGREGATE\tBYTES\tPARKED\tERROR")
		for _, p := range rows {
			// Writer-chosen text (topic, type, aggregate, the error quoting them): escaped.
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, printable(p.Topic), printable(p.EventType), printable(p.Aggregate), p.Size, p.ParkedAt.UTC().Format(time.RFC3339), printable(p.Error))
		}
		_ = tw.Flush()
		return ExitOK
	}
	code := ExitOK
	for _, id := range ids {
		ok, err := relay.Requeue(ctx, pool, *schema, id)
		switch {
		case err != nil:
			env.Logger.Error("requeue failed", "id", id, "err", err)
			code = ExitFail
		case !ok:
			fmt.Fprintf(env.Stderr, "no parked row %d\n", id)
			code = ExitFail
		default:
			fmt.Fprintf(env.Stdout, "requeued %d\n", id)
		}
	}
	return code
}
