package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/internal/outboxmsg"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// RelayOptions of `eventline bench relay`.
type RelayOptions struct {
	Events      int           // pre-written events to drain; default 1,000,000
	BatchSize   int           // relay batch size; default 2000
	Partitions  int           // of the benchmark topic; default 6
	Aggregates  int           // distinct keys; default 10,000
	LatencyRate int           // events/s of the live-latency phase; default 2000
	LatencyFor  time.Duration // length of that phase; default 5s
	// Mode is relay.ModePoll (default) or relay.ModeLogical.
	Mode relay.Mode
	// EventsPerTx is how many events each transaction of the logical
	// mode's fill writes (messages are decoded per transaction); default
	// 100. Poll mode's fill is one COPY.
	EventsPerTx int
	// Transactional runs the relay with --transactions.
	Transactional bool
	// RelayCommand starts the relay process (flags are appended). Default:
	// this executable's `relay` subcommand.
	RelayCommand []string
	Logger       *slog.Logger
}

// RelayResult is what `bench relay --json` prints.
type RelayResult struct {
	Mode                string  `json:"mode"` // how the relay reads the outbox: "poll" or "logical"
	Transactional       bool    `json:"transactional"`
	Events              int     `json:"events"`
	BatchSize           int     `json:"batch_size"`
	DrainSeconds        float64 `json:"drain_seconds"`
	EventsPerSec        float64 `json:"events_per_sec"`
	CeilingEventsPerSec float64 `json:"ceiling_events_per_sec"`
	RatioToCeiling      float64 `json:"ratio_to_ceiling"`
	LatencyRate         int     `json:"latency_rate_per_sec"`
	LatencyEvents       int     `json:"latency_events"`
	P50Ms               float64 `json:"p50_ms"`
	P99Ms               float64 `json:"p99_ms"`
	LatencyMeasure      string  `json:"latency_measure"`
	MaxRSSMB            float64 `json:"max_rss_mb"`
	Machine             string  `json:"machine"`
	// Transactional: the Kafka transactions of the drain, their mean size
	// and the drain's time per transaction (they run one after another).
	Transactions         int     `json:"transactions,omitempty"`
	EventsPerTransaction float64 `json:"events_per_transaction,omitempty"`
	MsPerTransaction     float64 `json:"ms_per_transaction,omitempty"`
}

// positionRecords counts the transactions a transactional relay committed
// on s's outbox: half the end offset of its position topic.
func positionRecords(ctx context.Context, adm *kadm.Client, env Env, s *setup) (int, error) {
	cfg, err := pgconn.ParseConfig(env.DatabaseURL)
	if err != nil {
		return 0, err
	}
	topic := relay.PositionTopic(relay.DefaultTransactionalID(cfg.Database, s.schema, s.mode))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("reading the end of %s: %w", topic, err)
	}
	o, _ := ends.Lookup(topic, 0)
	return int(o.Offset / 2), nil
}

func (o RelayOptions) withDefaults() RelayOptions {
	o.Events = cmp.Or(o.Events, 1_000_000)
	o.BatchSize = cmp.Or(o.BatchSize, relay.DefaultBatchSize)
	o.Partitions = cmp.Or(o.Partitions, 6)
	o.Aggregates = cmp.Or(o.Aggregates, 10_000)
	o.LatencyRate = cmp.Or(o.LatencyRate, 2000)
	o.LatencyFor = cmp.Or(o.LatencyFor, 5*time.Second)
	o.Mode = cmp.Or(o.Mode, relay.ModePoll)
	o.EventsPerTx = cmp.Or(o.EventsPerTx, 100)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	return o
}

// Relay runs the relay benchmark: fill the outbox with Events rows and drain
// them without Kafka (the ceiling); fill again and drain them with the relay
// process; then hold a steady LatencyRate of single-event transactions and
// measure commit-to-consumer latency; finally read the relay's peak RSS.
//
// In logical mode a second slot is made beside the relay's before one fill
// of Events messages, so both hold the same events: the ceiling streams the
// second with the relay's own decoding and no Kafka
// (the relay's decoding without Kafka), then the relay process drains its own.
func Relay(ctx context.Context, env Env, o RelayOptions) (RelayResult, error) {
	o = o.withDefaults()
	log := o.Logger
	res := RelayResult{Mode: string(o.Mode), Transactional: o.Transactional, Events: o.Events, BatchSize: o.BatchSize, LatencyRate: o.LatencyRate, Machine: Machine(),
		LatencyMeasure: "transaction commit to consumer receipt (an upper bound of commit to broker ack)"}
	s, err := newSetup(ctx, env, o.Mode, o.Partitions, 4, log)
	if err != nil {
		return res, err
	}
	defer s.close()
	schemaID, err := s.orderSchemaID(ctx)
	if err != nil {
		return res, err
	}

	var n int
	var ceiling time.Duration
	var ceilingLSN string // logical mode: where the ceiling's slot stopped
	if o.Mode == relay.ModeLogical {
		n, ceiling, ceilingLSN, err = logicalCeiling(ctx, env, s, o, schemaID)
		if err != nil {
			return res, err
		}
	} else {
		// Ceiling: the relay's own read and settle statements, no Kafka.
		log.Info("bench relay: writing events for the SQL-only ceiling", "events", o.Events)
		if err := fill(ctx, s, o, schemaID); err != nil {
			return res, err
		}
		sqlOnly, err := relay.New(relay.Config{DatabaseURL: env.DatabaseURL, Brokers: env.Brokers, KafkaOpts: env.KafkaOpts, Schema: s.schema, Pipeline: s.pipe, BatchSize: o.BatchSize, Logger: log})
		if err != nil {
			return res, err
		}
		start := time.Now()
		n, err = hook.RelayDrain(ctx, sqlOnly)
		ceiling = time.Since(start)
		sqlOnly.Close()
		if err != nil {
			return res, err
		}
		log.Info("bench relay: SQL-only drain", "events", n, "seconds", ceiling.Seconds())
		log.Info("bench relay: writing events for the relay", "events", o.Events)
		if err := fill(ctx, s, o, schemaID); err != nil {
			return res, err
		}
	}
	res.CeilingEventsPerSec = float64(n) / ceiling.Seconds()
	// The topic is created before the drain, untimed: a client that asked
	// for a topic before it existed keeps that answer for MetadataMinAge
	// (5 s), so end offsets read before the relay created it would hide
	// its records for up to 5 s of a short drain on Apache Kafka. The relay
	// finds it in place, as eventline.yaml describes it.
	if err := createTopic(ctx, env, s.topic, o.Partitions); err != nil {
		return res, err
	}
	// Completion is read from Kafka's end offsets (a metadata request to
	// the broker every 20 ms), not from the outbox: a count(*) over the
	// million rows would compete with the relay for the database and the
	// same two cores.
	kcl, err := env.kafka()
	if err != nil {
		return res, err
	}
	defer kcl.Close()
	adm := kadm.NewClient(kcl)
	published := func() (int64, error) { return onTopic(ctx, adm, s.topic) }
	base, err := published()
	if err != nil {
		return res, err
	}
	start := time.Now()
	proc, err := startRelayProcess(env, s, o.Partitions, o.BatchSize, o.Transactional, o.RelayCommand)
	if err != nil {
		return res, err
	}
	defer proc.stop()
	outbox := pgx.Identifier{s.schema, "eventline_outbox"}.Sanitize()
	// until polls done every 20 ms while the relay runs.
	until := func(done func() (bool, error)) error {
		for {
			ok, err := done()
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			select {
			case err := <-proc.done:
				return fmt.Errorf("relay exited during the drain: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	done := func() (bool, error) {
		n, err := published()
		if err != nil && ctx.Err() == nil {
			log.Debug("bench relay: reading end offsets", "err", err)
		}
		return n-base >= int64(o.Events), nil
	}
	switch {
	case o.Transactional && o.Mode == relay.ModeLogical:
		// End offsets count the transaction markers too: a transactional
		// logical relay is done when it confirmed the slot past the last
		// event (it confirms what committed transactions hold, every
		// 100 ms here).
		done = func() (bool, error) {
			var done bool
			err := s.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, s.slots[0], ceilingLSN).Scan(&done)
			return done, err
		}
	case o.Transactional:
		// End offsets count the transaction markers too: a transactional
		// relay is done when the outbox is empty (it deletes a batch's
		// rows once its transaction committed).
		done = func() (bool, error) {
			var left bool
			err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{s.schema, "eventline_outbox"}.Sanitize()+`)`).Scan(&left)
			return !left, err
		}
	}
	if err := until(done); err != nil {
		return res, err
	}
	drain := time.Since(start)
	if o.Mode == relay.ModeLogical {
		// The offsets count duplicates too, and the relay confirms its
		// position after the acks: wait (untimed) until its slot is where
		// the ceiling's stopped, past every event, before the latency
		// phase.
		if err := until(func() (bool, error) {
			var done bool
			err := s.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, s.slots[0], ceilingLSN).Scan(&done)
			return done, err
		}); err != nil {
			return res, err
		}
	} else {
		// The offsets count duplicates too, and the last batch's rows are
		// deleted just after its acks: wait until the outbox is empty
		// (untimed) before the vacuum and the latency phase.
		if err := until(func() (bool, error) {
			var left bool
			err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+outbox+`)`).Scan(&left)
			return !left, err
		}); err != nil {
			return res, err
		}
	}
	res.DrainSeconds = drain.Seconds()
	res.EventsPerSec = float64(o.Events) / drain.Seconds()
	res.RatioToCeiling = res.EventsPerSec / res.CeilingEventsPerSec
	log.Info("bench relay: relay drain", "events", o.Events, "seconds", drain.Seconds())
	if o.Transactional {
		// Each transaction put one position record and one commit marker
		// on the (new) position topic of this run's outbox.
		txns, err := positionRecords(ctx, adm, env, s)
		if err != nil {
			return res, err
		}
		res.Transactions = txns
		if txns > 0 {
			res.EventsPerTransaction = float64(o.Events) / float64(txns)
			res.MsPerTransaction = drain.Seconds() * 1000 / float64(txns)
		}
	}

	// The latency phase measures a steady state, not the vacuum debt of
	// the million rows just deleted (logical mode deleted none).
	if o.Mode == relay.ModePoll {
		if _, err := s.pool.Exec(ctx, `VACUUM (ANALYZE) `+outbox); err != nil {
			return res, err
		}
	}
	lat, err := liveLatency(ctx, env, s, o)
	if err != nil {
		return res, err
	}
	res.LatencyEvents = len(lat)
	res.P50Ms = ms(percentile(lat, 0.50))
	res.P99Ms = ms(percentile(lat, 0.99))
	res.MaxRSSMB = peakRSS(proc.cmd.Process.Pid)
	proc.stop()
	return res, nil
}

// relayProcess is a relay child process and its pipeline file.
type relayProcess struct {
	*childProcess
	cfg string
}

// startRelayProcess runs `eventline relay` for the benchmark's schema, topic
// and mode as a child process, so its memory and CPU are its own.
func startRelayProcess(env Env, s *setup, partitions, batch int, transactional bool, command []string) (*relayProcess, error) {
	args := []string{"--schema", s.schema, "--mode", string(s.mode), "--batch-size", fmt.Sprint(batch)}
	if s.mode == relay.ModePoll {
		// Poll mode reads from the outbox's lowest id this often; logical
		// mode would probe the (empty) table this often: its default.
		args = append(args, "--poll-interval", "100ms")
	}
	if transactional {
		args = append(args, "--transactions")
		if s.mode == relay.ModeLogical {
			// The drain ends when the slot is confirmed past the last
			// event (below): confirm often, so the drain's time is not
			// the status interval's.
			args = append(args, "--status-interval", "100ms")
		}
	}
	var extra []string
	// EVENTLINE_RELAY_CPUPROFILE profiles the relay process alone.
	if p := os.Getenv("EVENTLINE_RELAY_CPUPROFILE"); p != "" {
		extra = append(extra, "EVENTLINE_CPUPROFILE="+p)
	}
	return startRelayChild(env, command, s.topic, partitions, args, extra...)
}

// startRelayChild runs command (default: this executable's `relay`) with a
// pipeline of topic and args, the brokers and the pipeline file added. The
// database URL carries a password: it goes in the environment, not argv,
// which any user on the machine can read in ps.
func startRelayChild(env Env, command []string, topic string, partitions int, args []string, extraEnv ...string) (*relayProcess, error) {
	cfgFile, err := os.CreateTemp("", "eventline-bench-*.yaml")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfgFile, "topics: [{name: %q, partitions: %d, events: [eventline.orders.OrderCreated]}]\n", topic, partitions)
	cfgFile.Close()
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			os.Remove(cfgFile.Name())
			return nil, err
		}
		command = []string{exe, "relay"}
	}
	args = append(append(slices.Clip(command[1:]), "--brokers", joinComma(env.Brokers), "--config", cfgFile.Name()), args...)
	c, err := startChild(command[0], args, append([]string{"EVENTLINE_LOG_LEVEL=warn", "DATABASE_URL=" + env.DatabaseURL}, extraEnv...), os.Stderr)
	if err != nil {
		os.Remove(cfgFile.Name())
		return nil, fmt.Errorf("starting the relay: %w", err)
	}
	return &relayProcess{childProcess: c, cfg: cfgFile.Name()}, nil
}

// stop ends the relay with SIGTERM (SIGKILL after 30 s) and removes its
// pipeline file; idempotent.
func (p *relayProcess) stop() {
	p.childProcess.stop()
	os.Remove(p.cfg)
}

func joinComma(xs []string) string { return strings.Join(xs, ",") }

// sampleAggregates makes n aggregate ids and a Confluent-framed
// OrderCreated value for each (the same seed every run).
func sampleAggregates(n, schemaID int) (info schemas.Info, aggs []string, values [][]byte, err error) {
	info, _ = events.Catalog().Lookup("eventline.orders.OrderCreated")
	rng := rand.New(rand.NewPCG(1, 2))
	aggs = make([]string, n)
	values = make([][]byte, n)
	for i := range aggs {
		aggs[i] = uuid.NewString()
		if values[i], err = schemas.Encode(schemaID, info.Schema, sampleOrder(aggs[i], rng)); err != nil {
			return info, nil, nil, err
		}
	}
	return info, aggs, values, nil
}

// fill writes o.Events outbox rows with COPY, as a producer would have:
// Confluent-framed OrderCreated values keyed by one of o.Aggregates ids.
func fill(ctx context.Context, s *setup, o RelayOptions, schemaID int) error {
	info, aggs, values, err := sampleAggregates(o.Aggregates, schemaID)
	if err != nil {
		return err
	}
	headers := `[["traceparent","00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]]`
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= o.Events {
			return nil, nil
		}
		a := i % o.Aggregates
		i++
		return []any{s.topic, []byte(aggs[a]), values[a], uuid.New(), info.Name, "order", aggs[a], int64(i/o.Aggregates + 1), headers}, nil
	})
	_, err = s.pool.CopyFrom(ctx, pgx.Identifier{s.schema, "eventline_outbox"},
		[]string{"topic", "record_key", "record_value", "event_id", "event_type", "aggregate_type", "aggregate_id", "aggregate_version", "headers"}, src)
	if err != nil {
		return fmt.Errorf("filling the outbox: %w", err)
	}
	_, err = s.pool.Exec(ctx, `ANALYZE `+pgx.Identifier{s.schema, "eventline_outbox"}.Sanitize())
	return err
}

// logicalCeiling makes the ceiling's slot beside the relay's, fills both
// with o.Events messages (fillMessages), and streams the ceiling's slot with
// the relay's decoding without Kafka, timed; then drops that slot. It returns the
// events decoded, the time and the position the ceiling's slot stopped at
// (past every event: the relay's slot is done there too).
func logicalCeiling(ctx context.Context, env Env, s *setup, o RelayOptions, schemaID int) (int, time.Duration, string, error) {
	log := o.Logger
	slot := "eventline_bench_ceiling_" + strings.TrimPrefix(s.schema, "bench_")
	if err := s.createSlot(ctx, slot); err != nil {
		return 0, 0, "", err
	}
	log.Info("bench relay: writing events (logical decoding messages) for the decode-only ceiling and the relay", "events", o.Events, "events_per_tx", o.EventsPerTx)
	if err := fillMessages(ctx, s, o, schemaID); err != nil {
		return 0, 0, "", err
	}
	dec, err := relay.New(relay.Config{Mode: relay.ModeLogical, DatabaseURL: env.DatabaseURL, Brokers: env.Brokers, KafkaOpts: env.KafkaOpts, Schema: s.schema, Pipeline: s.pipe, BatchSize: o.BatchSize, Logger: log})
	if err != nil {
		return 0, 0, "", err
	}
	start := time.Now()
	n, err := hook.RelayDecode(ctx, dec, slot, o.Events)
	ceiling := time.Since(start)
	dec.Close()
	if err != nil {
		return n, ceiling, "", err
	}
	log.Info("bench relay: decode-only stream", "events", n, "seconds", ceiling.Seconds())
	// The session's last status update lands as it ends: read the slot's
	// position once no session streams it.
	var lsn string
	for {
		var active bool
		if err := s.pool.QueryRow(ctx, `SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &lsn); err != nil {
			return n, ceiling, "", fmt.Errorf("reading slot %s: %w", slot, err)
		}
		if !active {
			break
		}
		select {
		case <-ctx.Done():
			return n, ceiling, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := dropSlot(ctx, s.pool, slot); err != nil {
		return n, ceiling, "", fmt.Errorf("dropping slot %s: %w", slot, err)
	}
	s.slots = slices.DeleteFunc(s.slots, func(x string) bool { return x == slot })
	return n, ceiling, lsn, nil
}

// fillMessages writes o.Events events as the producer's logical mode would
// have (the same outboxmsg envelope and statement), o.EventsPerTx per
// transaction, a pipeline of transactions per round trip: Confluent-framed
// OrderCreated values keyed by one of o.Aggregates ids.
func fillMessages(ctx context.Context, s *setup, o RelayOptions, schemaID int) error {
	info, aggs, values, err := sampleAggregates(o.Aggregates, schemaID)
	if err != nil {
		return err
	}
	headers := []outboxmsg.Header{{Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	prefix := outboxmsg.Prefix(s.schema)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	const perRoundTrip = 2000 // events
	i := 0
	for i < o.Events {
		b := &pgx.Batch{}
		for sent := 0; sent < perRoundTrip && i < o.Events; {
			k := min(o.EventsPerTx, o.Events-i)
			contents := make([][]byte, k)
			for j := range contents {
				a := i % o.Aggregates
				v := int64(i/o.Aggregates + 1)
				c, err := outboxmsg.Encode(&outboxmsg.Event{Topic: s.topic, Key: []byte(aggs[a]), Value: values[a], EventID: uuid.New(), EventType: info.Name,
					AggregateType: "order", AggregateID: aggs[a], AggregateVersion: &v, Headers: headers})
				if err != nil {
					return err
				}
				contents[j] = c
				i++
			}
			b.Queue(`BEGIN`)
			b.Queue(`SELECT pg_logical_emit_message(true, $1, m) FROM unnest($2::bytea[]) AS m`, prefix, contents)
			b.Queue(`COMMIT`)
			sent += k
		}
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("writing the events as messages: %w", err)
		}
	}
	return nil
}

// liveLatency appends single-event transactions at o.LatencyRate for
// o.LatencyFor and returns each event's commit-to-receipt latency.
func liveLatency(ctx context.Context, env Env, s *setup, o RelayOptions) ([]time.Duration, error) {
	total := int(float64(o.LatencyRate) * o.LatencyFor.Seconds())
	cctx, cancel := context.WithTimeout(ctx, o.LatencyFor+60*time.Second)
	defer cancel()
	cons, err := tailFromEnd(cctx, env, s.topic)
	if err != nil {
		return nil, err
	}
	defer cons.Close()

	var mu sync.Mutex
	committed := map[string]time.Time{}
	received := map[string]time.Time{}
	consumed := make(chan error, 1)
	go func() { consumed <- firstSeen(cctx, cons, &mu, received, map[string]time.Time{}, total) }()
	if err := appendPaced(cctx, s, o.LatencyRate, total, 4, func(id string, at time.Time) {
		mu.Lock()
		committed[id] = at
		mu.Unlock()
	}); err != nil {
		return nil, err
	}
	if err := <-consumed; err != nil {
		return nil, fmt.Errorf("latency phase: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var out []time.Duration
	for id, c := range committed {
		r, ok := received[id]
		if !ok {
			return nil, errors.New("latency phase: an event was committed but not received")
		}
		out = append(out, r.Sub(c))
	}
	return out, nil
}

// Machine describes the host for the figures.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range splitLines(string(b)) {
			if v, ok := cutPrefix(l, "model name"); ok {
				model = v
				break
			}
		}
	}
	return fmt.Sprintf("%d cores, %s", numCPU(), model)
}

// createTopic creates topic with partitions partitions (the broker's
// replication factor); one that exists already is fine.
// onTopic is the sum of topic's end offsets: the records written to it
// (a topic not created yet lists nothing: 0).
func onTopic(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n, nil
}

func createTopic(ctx context.Context, env Env, topic string, partitions int) error {
	cl, err := env.kafka()
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}
