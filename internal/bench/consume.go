package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// ConsumeOptions of `eventline bench consume`.
type ConsumeOptions struct {
	Events     int // pre-produced events to apply; default 1,000,000
	Partitions int // of the benchmark topics; default 6
	Aggregates int // distinct keys, one counter row each; default 10,000
	// MaxPollRecords of the measured group; default 6,000 (about 1,000
	// records per partition and poll: see consumerKafkaOpts).
	MaxPollRecords int
	// RetryEvents are applied in a second phase in which RetryShare of
	// them fail once and come back from retry.1 after RetryDelay, while
	// the others flow. Defaults: min(Events, 50,000), 0.02, 200ms.
	RetryEvents int
	RetryShare  float64
	RetryDelay  time.Duration
	// ConsumerCommand runs the measured consumer (the spec travels in
	// the environment). Default: this executable's hidden
	// `bench consumer-process` subcommand.
	ConsumerCommand []string
	Logger          *slog.Logger
}

// ConsumeResult is what `bench consume --json` prints.
type ConsumeResult struct {
	Events         int `json:"events"`
	Partitions     int `json:"partitions"`
	Aggregates     int `json:"aggregates"`
	MaxPollRecords int `json:"max_poll_records"`
	// Batches and MeanBatchSize are the batch handler's calls in the
	// measured phase: the per-partition transaction size the ceiling
	// repeats.
	Batches             int64   `json:"batches"`
	MeanBatchSize       float64 `json:"mean_batch_size"`
	Seconds             float64 `json:"seconds"`
	FirstApplyMs        float64 `json:"first_apply_ms"`
	EventsPerSec        float64 `json:"events_per_sec"`
	CeilingSeconds      float64 `json:"ceiling_seconds"`
	CeilingEventsPerSec float64 `json:"ceiling_events_per_sec"`
	RatioToCeiling      float64 `json:"ratio_to_ceiling"`
	Measure             string  `json:"measure"`

	RetryEvents        int     `json:"retry_events"`
	RetryShare         float64 `json:"retry_share"`
	RetryDelayMs       float64 `json:"retry_delay_ms"`
	RetryFailedOnce    int64   `json:"retry_failed_once"`
	RetryProcessed     int64   `json:"retry_processed"`
	RetryPhaseSeconds  float64 `json:"retry_phase_seconds"`
	RetryLatenessP99Ms float64 `json:"retry_lateness_p99_ms"`
	// Deadlocks the database detected during the consumer's two phases
	// (a retry batch and a source batch locking the same counters); each
	// costs deadlock_timeout (1s by default) and a retried batch. 0 when
	// pg_stat_database is unreadable.
	Deadlocks int64 `json:"deadlocks"`

	MaxRSSMB   float64 `json:"max_rss_mb"`
	RSSMeasure string  `json:"rss_measure"`
	// ExactlyOnce: every event of both phases and of the ceiling changed
	// its counter exactly once and has exactly one dedupe row.
	ExactlyOnce bool   `json:"exactly_once"`
	Machine     string `json:"machine"`
}

func (o ConsumeOptions) withDefaults() ConsumeOptions {
	o.Events = cmp.Or(o.Events, 1_000_000)
	o.Partitions = cmp.Or(o.Partitions, 6)
	o.Aggregates = cmp.Or(o.Aggregates, 10_000)
	o.MaxPollRecords = cmp.Or(o.MaxPollRecords, 6000)
	o.RetryEvents = cmp.Or(o.RetryEvents, min(o.Events, 50_000))
	o.RetryShare = cmp.Or(o.RetryShare, 0.02)
	o.RetryDelay = cmp.Or(o.RetryDelay, 200*time.Millisecond)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	return o
}

// ConsumerSpec is what the parent tells the consumer process, as JSON in
// ConsumerSpecEnv (not argv: it holds the database URL).
type ConsumerSpec struct {
	Env            Env           `json:"env"`
	Schema         string        `json:"schema"`
	Partitions     int           `json:"partitions"`
	MaxPollRecords int           `json:"max_poll_records"`
	Main           ConsumerPhase `json:"main"`
	Retry          ConsumerPhase `json:"retry"`
}

// ConsumerPhase is one group applying Events events of Topic into the
// counter table Counters.
type ConsumerPhase struct {
	Group    string        `json:"group"`
	Topic    string        `json:"topic"`
	Counters string        `json:"counters"`
	Events   int           `json:"events"`
	Share    float64       `json:"share"` // of events failing their first attempt
	Delay    time.Duration `json:"delay"` // of retry.1 (other steps 10x, unused)
}

// ConsumerSpecEnv names the environment variable holding the spec.
const ConsumerSpecEnv = "EVENTLINE_BENCH_CONSUMER_SPEC"

// ConsumerReport is what the consumer process prints.
type ConsumerReport struct {
	Main, Retry PhaseReport
	MaxRSSMB    float64
}

// PhaseReport is one phase's figures, from the consumer's own clock.
type PhaseReport struct {
	Seconds      float64
	FirstApplyMs float64
	Batches      int64 // batch handler calls
	BatchEvents  int64
	Stats        consumers.Stats
}

// Consume runs the consumer benchmark. It produces Events OrderCreated
// records (untimed) and has a consumer process apply them with a batch
// handler that bumps one counter row per aggregate; it then checks in SQL
// that every event was applied exactly once, and runs the SQL-only
// ceiling: the applier's dedupe insert and the handler's update, in
// transactions of the measured mean batch size, at the same concurrency.
// A second phase in the same process makes RetryShare of RetryEvents fail
// once and reports how late their retries ran (p99).
func Consume(ctx context.Context, env Env, o ConsumeOptions) (ConsumeResult, error) {
	o = o.withDefaults()
	log := o.Logger
	res := ConsumeResult{Events: o.Events, Partitions: o.Partitions, Aggregates: o.Aggregates, MaxPollRecords: o.MaxPollRecords,
		RetryEvents: o.RetryEvents, RetryShare: o.RetryShare, RetryDelayMs: ms(o.RetryDelay), Machine: Machine(),
		Measure:    "consumer: group Run start to the N-th event applied (join, fetch, decode, dedupe, handler, commit); ceiling: the same dedupe insert and update statements, same batch size and concurrency, no Kafka or decoding, better of two runs",
		RSSMeasure: "VmHWM of the consumer process (both phases)"}
	s, err := newSetup(ctx, env, relay.ModePoll, o.Partitions, 2*o.Partitions, o.Logger)
	if err != nil {
		return res, err
	}
	defer s.close()
	schemaID, err := s.orderSchemaID(ctx)
	if err != nil {
		return res, err
	}
	w := newWorkload(o.Aggregates, o.Partitions)
	id := strings.TrimPrefix(s.topic, "bench.")
	mainPhase := ConsumerPhase{Group: "bench-consume-" + id, Topic: s.topic, Counters: "bench_counters", Events: o.Events, Delay: time.Second}
	retryPhase := ConsumerPhase{Group: "bench-retry-" + id, Topic: s.topic + ".retrying", Counters: "bench_counters_retry", Events: o.RetryEvents, Share: o.RetryShare, Delay: o.RetryDelay}
	for _, p := range []ConsumerPhase{mainPhase, retryPhase} {
		if err := w.createCounters(ctx, s, p.Counters, p.Events); err != nil {
			return res, err
		}
	}

	log.Info("bench consume: producing events", "events", o.Events, "retry_phase_events", o.RetryEvents, "partitions", o.Partitions)
	if err := w.produce(ctx, env, schemaID, mainPhase.Topic, o.Events, 0); err != nil {
		return res, err
	}
	if err := w.produce(ctx, env, schemaID, retryPhase.Topic, o.RetryEvents, o.RetryShare); err != nil {
		return res, err
	}
	res.RetryFailedOnce = w.failing

	settle(ctx, s)
	deadlocks := deadlockCount(ctx, s)
	log.Info("bench consume: consumer process applying", "events", o.Events)
	rep, err := runConsumerProcess(ctx, o.ConsumerCommand, ConsumerSpec{Env: env, Schema: s.schema, Partitions: o.Partitions, MaxPollRecords: o.MaxPollRecords, Main: mainPhase, Retry: retryPhase})
	if err != nil {
		return res, err
	}
	res.Seconds = rep.Main.Seconds
	res.FirstApplyMs = rep.Main.FirstApplyMs
	res.EventsPerSec = float64(o.Events) / rep.Main.Seconds
	res.Batches = rep.Main.Batches
	if rep.Main.Batches > 0 {
		res.MeanBatchSize = float64(rep.Main.BatchEvents) / float64(rep.Main.Batches)
	}
	res.RetryPhaseSeconds = rep.Retry.Seconds
	res.RetryProcessed = rep.Retry.Stats.RetryProcessed
	res.RetryLatenessP99Ms = ms(rep.Retry.Stats.RetryLatenessP99)
	res.MaxRSSMB = rep.MaxRSSMB
	if after := deadlockCount(ctx, s); deadlocks >= 0 && after >= 0 {
		res.Deadlocks = after - deadlocks
	}
	log.Info("bench consume: applied", "events", o.Events, "seconds", res.Seconds, "mean_batch", res.MeanBatchSize)

	if err := verify(ctx, s, mainPhase, rep.Main.Stats, 0); err != nil {
		return res, err
	}
	if err := verify(ctx, s, retryPhase, rep.Retry.Stats, w.failing); err != nil {
		return res, err
	}

	// The ceiling starts from the state the consumer started from: no
	// dedupe rows, freshly written counters.
	if err := w.createCounters(ctx, s, mainPhase.Counters, o.Events); err != nil {
		return res, err
	}
	// The ceiling is the better of two runs (each from that state): on a
	// small shared machine one run's noise would otherwise show as a
	// ceiling below the consumer.
	batch := max(1, int(res.MeanBatchSize+0.5))
	var best time.Duration
	for round := range 2 {
		if round > 0 {
			if err := w.createCounters(ctx, s, mainPhase.Counters, o.Events); err != nil {
				return res, err
			}
		}
		if _, err := s.pool.Exec(ctx, `TRUNCATE `+pgx.Identifier{s.schema, "eventline_consumer_dedupe"}.Sanitize()); err != nil {
			return res, err
		}
		settle(ctx, s)
		log.Info("bench consume: SQL-only ceiling", "events", o.Events, "batch", batch, "concurrency", o.Partitions)
		took, err := w.ceiling(ctx, s, mainPhase, batch)
		if err != nil {
			return res, err
		}
		if err := verify(ctx, s, mainPhase, consumers.Stats{Applied: int64(o.Events)}, 0); err != nil {
			return res, fmt.Errorf("ceiling: %w", err)
		}
		if best == 0 || took < best {
			best = took
		}
	}
	took := best
	res.CeilingSeconds = took.Seconds()
	res.CeilingEventsPerSec = float64(o.Events) / took.Seconds()
	res.RatioToCeiling = res.EventsPerSec / res.CeilingEventsPerSec
	res.ExactlyOnce = true
	return res, nil
}

// workload: event i belongs to aggregate i % aggregates, and aggregate a
// to partition a % partitions (on the topic and in the ceiling alike).
type workload struct {
	aggs       []string
	totals     []int64 // an aggregate's OrderCreated.TotalMinor
	partitions int
	failing    int64 // events of the last produce that fail once
}

func newWorkload(aggregates, partitions int) *workload {
	w := &workload{aggs: make([]string, aggregates), totals: make([]int64, aggregates), partitions: partitions}
	for i := range w.aggs {
		w.aggs[i] = uuid.NewString()
		w.totals[i] = int64(100 + i%9000)
	}
	return w
}

// createCounters (re)creates table with one row per aggregate holding the
// count and total that events of n will add up to.
func (w *workload) createCounters(ctx context.Context, s *setup, table string, n int) error {
	t := pgx.Identifier{s.schema, table}.Sanitize()
	if _, err := s.pool.Exec(ctx, `DROP TABLE IF EXISTS `+t+`; CREATE TABLE `+t+` (aggregate_id text PRIMARY KEY, n bigint NOT NULL DEFAULT 0,
		total_minor bigint NOT NULL DEFAULT 0, want_n bigint NOT NULL, want_total bigint NOT NULL)`); err != nil {
		return fmt.Errorf("creating %s: %w", table, err)
	}
	a := len(w.aggs)
	i := 0
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{s.schema, table}, []string{"aggregate_id", "want_n", "want_total"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i >= a {
			return nil, nil
		}
		want := int64(n / a)
		if i < n%a {
			want++
		}
		i++
		return []any{w.aggs[i-1], want, want * w.totals[i-1]}, nil
	}))
	if err != nil {
		return fmt.Errorf("filling %s: %w", table, err)
	}
	_, err = s.pool.Exec(ctx, `VACUUM (ANALYZE) `+t)
	return err
}

// settle writes dirty pages out before a timed phase, so that no phase
// pays for the previous one's checkpoint. Best effort: CHECKPOINT needs
// superuser or pg_checkpoint, which an external database may not grant.
func settle(ctx context.Context, s *setup) {
	_, _ = s.pool.Exec(ctx, `CHECKPOINT`)
}

// deadlockCount is the database's deadlock counter (-1: unreadable).
func deadlockCount(ctx context.Context, s *setup) int64 {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// failsOnce: the event's first attempt fails (a share of ids, decided by
// the id alone so producer and consumer agree).
func failsOnce(id uuid.UUID, share float64) bool {
	return float64(binary.BigEndian.Uint32(id[:4])) < share*(1<<32)
}

// produce writes n Confluent-framed OrderCreated records to a new topic.
func (w *workload) produce(ctx context.Context, env Env, schemaID int, topic string, n int, share float64) error {
	cl, err := env.kafka(kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(50_000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(w.partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	info, _ := events.Catalog().Lookup("eventline.orders.OrderCreated")
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([][]byte, len(w.aggs))
	for a := range w.aggs {
		order := sampleOrder(w.aggs[a], rng)
		order.TotalMinor = w.totals[a]
		if values[a], err = schemas.Encode(schemaID, info.Schema, order); err != nil {
			return err
		}
	}
	var firstErr error
	var mu sync.Mutex
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			firstErr = firstOf(firstErr, err)
			mu.Unlock()
		}
	}
	w.failing = 0
	eventType := []byte(info.Name)
	for i := range n {
		a := i % len(w.aggs)
		id := uuid.New()
		if share > 0 && failsOnce(id, share) {
			w.failing++
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(a % w.partitions), Key: []byte(w.aggs[a]), Value: values[a], Headers: []kgo.RecordHeader{
			{Key: headers.EventID, Value: []byte(id.String())},
			{Key: headers.EventType, Value: eventType},
			{Key: headers.AggregateType, Value: []byte("order")},
			{Key: headers.AggregateID, Value: []byte(w.aggs[a])},
			{Key: headers.AggregateVersion, Value: []byte(strconv.Itoa(i/len(w.aggs) + 1))},
		}}, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if firstErr != nil {
		return fmt.Errorf("producing to %s: %w", topic, firstErr)
	}
	return nil
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// verify checks in SQL that phase p applied every event exactly once.
func verify(ctx context.Context, s *setup, p ConsumerPhase, st consumers.Stats, failing int64) error {
	var dedupe, wrong, sum int64
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+pgx.Identifier{s.schema, "eventline_consumer_dedupe"}.Sanitize()+` WHERE group_id = $1),
		count(*) FILTER (WHERE n <> want_n OR total_minor <> want_total), coalesce(sum(n), 0) FROM `+pgx.Identifier{s.schema, p.Counters}.Sanitize(), p.Group).Scan(&dedupe, &wrong, &sum)
	if err != nil {
		return fmt.Errorf("verifying %s: %w", p.Group, err)
	}
	var errs []error
	if dedupe != int64(p.Events) {
		errs = append(errs, fmt.Errorf("%d dedupe rows, want %d", dedupe, p.Events))
	}
	if sum != int64(p.Events) || wrong != 0 {
		errs = append(errs, fmt.Errorf("counters add up to %d, want %d; %d aggregates off", sum, p.Events, wrong))
	}
	if st.Applied != int64(p.Events) {
		errs = append(errs, fmt.Errorf("stats say %d applied, want %d", st.Applied, p.Events))
	}
	if st.Retried != failing || st.DeadLettered != 0 {
		errs = append(errs, fmt.Errorf("stats say %d retried and %d dead-lettered, want %d and 0", st.Retried, st.DeadLettered, failing))
	}
	if len(errs) > 0 {
		return fmt.Errorf("group %s did not apply every event exactly once: %w", p.Group, errors.Join(errs...))
	}
	return nil
}

// ceiling applies p.Events fresh event ids with the statements the
// measured phase ran: per partition worker, transactions of batch events,
// each the applier's dedupe insert and the handler's update.
func (w *workload) ceiling(ctx context.Context, s *setup, p ConsumerPhase, batch int) (time.Duration, error) {
	type event struct {
		id  uuid.UUID
		agg int
	}
	parts := make([][]event, w.partitions)
	for i := range p.Events {
		a := i % len(w.aggs)
		parts[a%w.partitions] = append(parts[a%w.partitions], event{uuid.New(), a})
	}
	dedupe := dedupeSQL(s.schema)
	update := updateSQL(s.schema, p.Counters)
	errc := make(chan error, w.partitions)
	start := time.Now()
	var wg sync.WaitGroup
	for _, evs := range parts {
		wg.Go(func() {
			for len(evs) > 0 {
				chunk := evs[:min(batch, len(evs))]
				evs = evs[len(chunk):]
				err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
					ids := make([][16]byte, len(chunk)) // as the applier sends them
					for i, e := range chunk {
						ids[i] = e.id
					}
					rows, err := tx.Query(ctx, dedupe, p.Group, ids)
					if err != nil {
						return err
					}
					fresh, err := pgx.CollectRows(rows, pgx.RowTo[[16]byte])
					if err != nil {
						return err
					}
					isNew := make(map[[16]byte]bool, len(fresh))
					for _, id := range fresh {
						isNew[id] = true
					}
					aggs, amounts := make([]string, 0, len(fresh)), make([]int64, 0, len(fresh))
					for _, e := range chunk {
						if isNew[e.id] {
							aggs, amounts = append(aggs, w.aggs[e.agg]), append(amounts, w.totals[e.agg])
						}
					}
					_, err = tx.Exec(ctx, update, aggs, amounts)
					return err
				})
				if err != nil {
					errc <- fmt.Errorf("ceiling: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return took, nil
}

// dedupeSQL is the applier's fast-path dedupe insert (consumers/apply.go).
func dedupeSQL(schema string) string {
	return `INSERT INTO ` + pgx.Identifier{schema, "eventline_consumer_dedupe"}.Sanitize() + ` (group_id, event_id) SELECT $1, id FROM unnest($2::uuid[]) AS id
		ON CONFLICT DO NOTHING RETURNING event_id`
}

// updateSQL adds a batch's events to their aggregates' counters, one
// statement per batch.
func updateSQL(schema, table string) string {
	return `UPDATE ` + pgx.Identifier{schema, table}.Sanitize() + ` AS c SET n = c.n + d.n, total_minor = c.total_minor + d.total
		FROM (SELECT agg, count(*) AS n, sum(amount) AS total FROM unnest($1::text[], $2::bigint[]) AS u(agg, amount) GROUP BY agg) AS d
		WHERE c.aggregate_id = d.agg`
}

// runConsumerProcess starts the consumer process with spec and returns its
// report once it has applied both phases and exited.
func runConsumerProcess(ctx context.Context, command []string, spec ConsumerSpec) (ConsumerReport, error) {
	var rep ConsumerReport
	cmd, err := childCommand(ctx, command, "consumer-process", ConsumerSpecEnv, spec)
	if err != nil {
		return rep, err
	}
	// EVENTLINE_CONSUMER_CPUPROFILE profiles the consumer process alone.
	if p := os.Getenv("EVENTLINE_CONSUMER_CPUPROFILE"); p != "" {
		cmd.Env = append(cmd.Env, "EVENTLINE_CPUPROFILE="+p)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return rep, fmt.Errorf("consumer process: %w", err)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("consumer process printed no report: %w: %q", err, out.String())
	}
	return rep, nil
}

// ConsumerProcess is the measured consumer: it applies spec's main phase,
// then its retry phase, each with a fresh group, and reports.
func ConsumerProcess(ctx context.Context, spec ConsumerSpec, log *slog.Logger) (ConsumerReport, error) {
	var rep ConsumerReport
	// Every partition of the source and of retry.1 may be in flight, plus
	// the dedupe expiry.
	pool, serde, err := spec.Env.consumerDeps(ctx, int32(2*spec.Partitions+2), "")
	if err != nil {
		return rep, err
	}
	defer pool.Close()
	if rep.Main, err = runPhase(ctx, spec, spec.Main, pool, serde, log); err != nil {
		return rep, err
	}
	if rep.Retry, err = runPhase(ctx, spec, spec.Retry, pool, serde, log); err != nil {
		return rep, err
	}
	rep.MaxRSSMB = peakRSS(0)
	return rep, nil
}

var errFirstAttempt = errors.New("bench: this event fails its first attempt")

func runPhase(ctx context.Context, spec ConsumerSpec, p ConsumerPhase, pool *pgxpool.Pool, serde *schemas.Serde, log *slog.Logger) (PhaseReport, error) {
	var rep PhaseReport
	update := updateSQL(spec.Schema, p.Counters)
	updateOne := `UPDATE ` + pgx.Identifier{spec.Schema, p.Counters}.Sanitize() + ` SET n = n + 1, total_minor = total_minor + $2 WHERE aggregate_id = $1`
	fail := func(ev *consumers.Event) bool { return p.Share > 0 && ev.Attempt == 0 && failsOnce(ev.ID, p.Share) }
	var batches, batchEvents atomic.Int64
	batchHandler := func(ctx context.Context, tx pgx.Tx, evs []*consumers.Event) error {
		aggs, amounts := make([]string, len(evs)), make([]int64, len(evs))
		for i, ev := range evs {
			if fail(ev) {
				return errFirstAttempt // isolated by the per-event handler
			}
			aggs[i], amounts[i] = ev.AggregateID, ev.Payload.(*events.OrderCreated).TotalMinor
		}
		batches.Add(1)
		batchEvents.Add(int64(len(evs)))
		_, err := tx.Exec(ctx, update, aggs, amounts)
		return err
	}
	handler := func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
		if fail(ev) {
			return errFirstAttempt
		}
		_, err := tx.Exec(ctx, updateOne, ev.AggregateID, ev.Payload.(*events.OrderCreated).TotalMinor)
		return err
	}
	var applied atomic.Int64
	var first atomic.Int64 // ns since start of the first applied batch
	done := make(chan struct{})
	var once sync.Once
	start := time.Now()
	g, err := consumers.New(consumers.Config{
		Group: p.Group, Topics: []string{p.Topic}, Brokers: spec.Env.Brokers, KafkaOpts: spec.Env.KafkaOpts, DB: pool, Schema: spec.Schema, Serde: serde,
		Handler: handler, BatchHandler: batchHandler, Events: []schemas.Event{&events.OrderCreated{}},
		RetryDelays:    []time.Duration{p.Delay, 10 * p.Delay},
		CreateTopics:   true,
		MaxPollRecords: spec.MaxPollRecords,
		ConsumerOpts:   consumerKafkaOpts(spec.MaxPollRecords, spec.Partitions),
		Logger:         log,
	})
	if err != nil {
		return rep, err
	}
	hook.AfterApply(g, func(results []hook.Result) {
		var n int64
		for _, r := range results {
			if r.Outcome == hook.Applied {
				n++
			}
		}
		first.CompareAndSwap(0, int64(time.Since(start)))
		if applied.Add(n) >= int64(p.Events) {
			once.Do(func() { close(done) })
		}
	})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- g.Run(runCtx) }()
	limit := time.NewTimer(2*time.Minute + time.Duration(p.Events)*time.Millisecond)
	defer limit.Stop()
	select {
	case <-done:
		rep.Seconds = time.Since(start).Seconds()
	case err := <-ran:
		return rep, fmt.Errorf("group %s stopped early: %v", p.Group, err)
	case <-limit.C:
		return rep, fmt.Errorf("group %s: %d of %d events applied before the time limit", p.Group, applied.Load(), p.Events)
	case <-ctx.Done():
		return rep, ctx.Err()
	}
	cancel()
	if err := <-ran; err != nil {
		return rep, err
	}
	rep.FirstApplyMs = ms(time.Duration(first.Load()))
	rep.Batches, rep.BatchEvents = batches.Load(), batchEvents.Load()
	rep.Stats = g.Stats()
	return rep, nil
}

// consumerKafkaOpts sizes fetches so that one poll of maxPoll records
// spans every partition: a poll's batches run in parallel and the next
// poll waits for the slowest, so even batches keep both cores busy.
func consumerKafkaOpts(maxPoll, partitions int) []kgo.Opt {
	const recordBytes = 400 // a benchmark record with its headers, batched
	perPartition := int32(max(maxPoll/partitions, 1) * recordBytes)
	return []kgo.Opt{kgo.FetchMaxPartitionBytes(perPartition), kgo.FetchMaxBytes(perPartition * int32(partitions) * 2)}
}
