package relay

import (
	"github.com/eventline/eventline/internal/dsn"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
)

// DefaultBatchSize: `eventline bench relay` drains fastest around 10,000 on
// the project's 2-core machine (500: 42k events/s, 2,000: 63k, 10,000: 89k,
// 20,000: 94k for 300,000 events); a batch is held in memory twice at most.
const DefaultBatchSize = 10000

// Config of a Relay. Zero values take the documented defaults.
type Config struct {
	// DatabaseURL of the outbox's database. Required. The relay opens a
	// pool for batches and one dedicated connection for the leader lock
	// and LISTEN.
	DatabaseURL string
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Schema is the PostgreSQL schema of the outbox. Default "public".
	Schema string
	// Topics are created (or checked) at startup. Default none.
	Topics []pipeline.Topic
	// BatchSize is the most rows read, produced and deleted at once.
	// Default DefaultBatchSize.
	BatchSize int
	// PollInterval is the fallback poll when no notification arrives.
	// Default 2s.
	PollInterval time.Duration
	// StandbyRetry is how often a standby tries to become leader.
	// Default 1s.
	StandbyRetry time.Duration
	// Retention, when positive, marks published rows instead of deleting
	// them and deletes them once older than Retention. Default 0: delete.
	Retention time.Duration
	// MaxBackoff caps the wait between retries of database errors.
	// Default 10s.
	MaxBackoff time.Duration
	// ShutdownTimeout bounds how long Run waits for the in-flight batch's
	// acks after its context is cancelled. Default 30s.
	ShutdownTimeout time.Duration
	// KafkaOpts are extra franz-go client options.
	KafkaOpts []kgo.Opt
	// TracerProvider, when set, gives every record a "<topic> publish"
	// span (franz-go's kotel plugin), child of the trace context the
	// producer stored in the row, and injects that span into the record's
	// traceparent header. Unset, the stored context is passed on as is.
	TracerProvider trace.TracerProvider
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = migrate.DefaultSchema
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.StandbyRetry == 0 {
		c.StandbyRetry = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("relay: DatabaseURL is required"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("relay: Brokers are required"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("relay: BatchSize must be positive, got %d", c.BatchSize))
	}
	if c.Retention < 0 {
		errs = append(errs, errors.New("relay: Retention must not be negative"))
	}
	return errors.Join(errs...)
}

// Stats are the relay's counters since it started.
type Stats struct {
	Leader    bool
	Published uint64
	Parked    uint64
	Batches   uint64
	// LastBatch is the read-produce-delete time of the last batch.
	LastBatch time.Duration
}

// Relay drains one outbox. Create it with New, run it with Run.
type Relay struct {
	cfg   Config
	pool  *pgxpool.Pool
	kafka *kgo.Client
	table string // quoted outbox table
	park  string // quoted parked table
	key   string // advisory lock key text
	// tracing: kotel hooks are installed.
	tracing bool

	batchCap sync.Map // topic -> int32: the topic's max.message.bytes, when smaller than the default

	started   atomic.Bool // Run was called: a Relay runs once
	leader    atomic.Bool
	connected atomic.Bool // holds a lock connection: leader or standby
	published atomic.Uint64
	parked    atomic.Uint64
	batches   atomic.Uint64
	lastBatch atomic.Int64
}

// New checks the configuration and creates the clients; it does not
// connect (Run does, retrying), so a relay can start before its database or
// broker is up.
func New(cfg Config) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(context.Background(), cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("relay: bad database URL %s: %w", dsn.Redact(cfg.DatabaseURL), err)
	}
	r := &Relay{
		cfg: cfg, pool: pool,
		table: pgx.Identifier{cfg.Schema, "eventline_outbox"}.Sanitize(),
		park:  pgx.Identifier{cfg.Schema, "eventline_outbox_parked"}.Sanitize(),
		key:   "eventline_relay:" + cfg.Schema,
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent producer (the default) needs all acks
		kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(4 * cfg.BatchSize),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// Retry a missing topic forever, like any transient error: a
		// failed batch must never let a later batch of the same
		// partition overtake it.
		kgo.UnknownTopicRetries(-1),
		// Batches no larger than the topic accepts: a broker rejecting a
		// batch fails every record in it, and the relay would park good
		// rows with the one that is too large.
		kgo.ProducerBatchMaxBytesFn(r.batchMaxBytes),
	}, cfg.KafkaOpts...)
	if cfg.TracerProvider != nil {
		r.tracing = true
		tracer := kotel.NewTracer(kotel.TracerProvider(cfg.TracerProvider), kotel.TracerPropagator(propagation.TraceContext{}))
		opts = append(opts, kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(tracer)).Hooks()...))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("relay: kafka client: %w", err)
	}
	r.kafka = cl
	return r, nil
}

// defaultBatchMaxBytes is franz-go's (and Kafka's) default max.message.bytes.
const defaultBatchMaxBytes = 1_000_012

func (r *Relay) batchMaxBytes(topic string) int32 {
	if v, ok := r.batchCap.Load(topic); ok {
		return v.(int32)
	}
	return defaultBatchMaxBytes
}

// learnBatchLimits reads max.message.bytes of the configured topics, before
// anything is produced to them.
func (r *Relay) learnBatchLimits(ctx context.Context, adm *kadm.Client) error {
	names := make([]string, 0, len(r.cfg.Topics))
	for _, t := range r.cfg.Topics {
		names = append(names, t.Name)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return fmt.Errorf("describing topic configs: %w", err)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			n, err := strconv.Atoi(*c.Value)
			if err != nil {
				continue
			}
			n = min(max(n, 512), defaultBatchMaxBytes)
			r.batchCap.Store(rc.Name, int32(n))
		}
	}
	return nil
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	return Stats{
		Leader:    r.leader.Load(),
		Published: r.published.Load(),
		Parked:    r.parked.Load(),
		Batches:   r.batches.Load(),
		LastBatch: time.Duration(r.lastBatch.Load()),
	}
}

// Close releases the clients. Call it after Run returned.
func (r *Relay) Close() {
	r.kafka.Close()
	r.pool.Close()
}

// Run ensures the topics, then alternates between standby and leader until
// ctx is done. As leader it drains the outbox; when ctx is cancelled it
// finishes the in-flight batch (up to ShutdownTimeout) and returns nil.
//
// Errors that heal by waiting (a broker or database that cannot be reached,
// a lost connection, a failed batch) are logged and retried with backoff.
// Errors that cannot end Run, which returns them: refused database or SASL
// credentials, a missing database or outbox table, no privilege on the
// outbox, and at startup a topic or cluster authorization failure (see
// unrecoverable). Each session starts by checking that the outbox can be
// drained, so a standby reports these too.
//
// A Relay runs once: a second call, concurrent or after the first returned,
// returns ErrAlreadyRunning.
func (r *Relay) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	log := r.cfg.Logger
	if err := r.retry(ctx, "creating topics", true, r.ensureTopics); err != nil {
		return runResult(ctx, err)
	}
	for ctx.Err() == nil {
		conn, err := r.connect(ctx)
		if err != nil {
			return runResult(ctx, err)
		}
		r.connected.Store(true)
		err = r.session(ctx, conn)
		r.connected.Store(false)
		_ = conn.Close(context.Background())
		r.leader.Store(false)
		if err != nil && ctx.Err() == nil {
			if unrecoverable(err, false) {
				return fmt.Errorf("relay: %w", err)
			}
			log.Warn("relay session ended; reconnecting", "err", err)
			r.sleep(ctx, r.cfg.StandbyRetry)
		}
	}
	return nil
}

// runResult is what Run returns for an error of retry: nil once ctx is done
// (the stop was asked for), the error otherwise.
func runResult(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// retry runs fn until it succeeds or ctx is done, backing off between
// attempts; it returns ctx's error in the latter case, and fn's error,
// wrapped, when waiting cannot heal it (unrecoverable; startup says whether
// the relay is still starting).
func (r *Relay) retry(ctx context.Context, what string, startup bool, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if unrecoverable(err, startup) {
			return fmt.Errorf("relay: %s: %w", what, err)
		}
		r.cfg.Logger.Error("relay: "+what+" failed; retrying", "err", err, "in", backoff)
		if !r.sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

// sleep waits d with jitter or until ctx is done; false means ctx is done.
func (r *Relay) sleep(ctx context.Context, d time.Duration) bool {
	d += time.Duration(rand.Int64N(int64(d)/5 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Relay) connect(ctx context.Context) (*pgx.Conn, error) {
	var conn *pgx.Conn
	err := r.retry(ctx, "connecting to postgres at "+dsn.Redact(r.cfg.DatabaseURL), false, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, r.cfg.DatabaseURL)
		if err != nil {
			return err
		}
		conn = c
		return nil
	})
	return conn, err
}

func (r *Relay) ensureTopics(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if len(r.cfg.Topics) == 0 {
		// Nothing to create; meet the broker all the same, so that
		// refused credentials end Run now rather than at the first row.
		return r.kafka.Ping(cctx)
	}
	adm := kadm.NewClient(r.kafka)
	for _, t := range r.cfg.Topics {
		configs := map[string]*string{}
		for k, v := range t.Configs {
			configs[k] = &v
		}
		resp, err := adm.CreateTopic(cctx, t.Partitions, t.ReplicationFactor, configs, t.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			r.cfg.Logger.Info("relay: created topic", "topic", t.Name, "partitions", t.Partitions)
		case errors.Is(err, kerr.TopicAlreadyExists):
			td, err := adm.ListTopics(cctx, t.Name)
			if err != nil {
				return err
			}
			if got := len(td[t.Name].Partitions); got < int(t.Partitions) {
				return fmt.Errorf("topic %s has %d partitions, eventline.yaml asks for %d: add partitions deliberately (keys would move) or lower the setting", t.Name, got, t.Partitions)
			}
		default:
			return fmt.Errorf("creating topic %s: %w", t.Name, err)
		}
	}
	return r.learnBatchLimits(cctx, adm)
}

// session holds conn for one standby/leader period. It returns when the
// connection fails, a batch fails with an unrecoverable error, or ctx is
// done.
func (r *Relay) session(ctx context.Context, conn *pgx.Conn) error {
	log := r.cfg.Logger
	if err := r.checkOutbox(ctx, conn); err != nil {
		return err
	}
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, r.key).Scan(&got); err != nil {
			return fmt.Errorf("trying the leader lock: %w", err)
		}
		if got {
			break
		}
		if !r.sleep(ctx, r.cfg.StandbyRetry) {
			return nil
		}
	}
	r.leader.Store(true)
	log.Info("relay: leader", "schema", r.cfg.Schema)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{migrate.Channel(r.cfg.Schema)}.Sanitize()); err != nil {
		return fmt.Errorf("LISTEN: %w", err)
	}

	// The lock connection is watched by one goroutine (a pgx.Conn is not
	// safe for concurrent use): it turns notifications into wake-ups and a
	// dead connection into lost leadership.
	wake := make(chan struct{}, 1)
	lost := make(chan error, 1)
	var lostFlag atomic.Bool
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := r.watch(watchCtx, conn, wake)
		lostFlag.Store(true)
		lost <- err
	}()
	defer func() { stopWatch(); wg.Wait() }()

	var cleanup <-chan time.Time
	if r.cfg.Retention > 0 {
		t := time.NewTicker(min(r.cfg.Retention/2, time.Minute))
		defer t.Stop()
		cleanup = t.C
	}
	backoff := 100 * time.Millisecond
	for {
		select {
		case err := <-lost:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		default:
		}
		if ctx.Err() != nil {
			return nil
		}
		err := r.drain(ctx, &lostFlag)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if unrecoverable(err, false) {
				return err
			}
			log.Error("relay: batch failed; retrying", "err", err, "in", backoff)
			if !r.sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, r.cfg.MaxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		poll := time.NewTimer(r.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-poll.C:
		case err := <-lost:
			lost <- err // handled at the top of the loop
		case <-cleanup:
			if err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
				log.Error("relay: retention cleanup failed", "err", err)
			}
		}
		poll.Stop()
	}
}

// checkOutbox fails when the outbox cannot be drained however long the
// relay waits (unrecoverable): the tables are missing, or the role may not
// read, delete (or mark) and park rows. The statements touch no row (WHERE
// false) and are rolled back, yet PostgreSQL checks existence and privileges
// as for real ones.
func (r *Relay) checkOutbox(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("checking the outbox: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	stmts := []string{
		`SELECT id FROM ` + r.table + ` WHERE false`,
		`DELETE FROM ` + r.table + ` WHERE false`,
		`INSERT INTO ` + r.park + ` (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, error)
			SELECT id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, '' FROM ` + r.table + ` WHERE false`,
	}
	if r.cfg.Retention > 0 {
		stmts = append(stmts, `UPDATE `+r.table+` SET published_at = clock_timestamp() WHERE false`)
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42P01" {
				return fmt.Errorf("checking the outbox: %s or %s does not exist (have the migrations run? eventline migrate): %w", r.table, r.park, err)
			}
			return fmt.Errorf("checking the outbox %s: %w", r.table, err)
		}
	}
	return nil
}

// watch waits for notifications on conn and pings it when idle; it returns
// the error that ended the connection, or nil when ctx is done.
func (r *Relay) watch(ctx context.Context, conn *pgx.Conn, wake chan<- struct{}) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.StandbyRetry)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			select {
			case wake <- struct{}{}:
			default:
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, r.cfg.StandbyRetry)
		err = conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
}

type outboxRow struct {
	id                        int64
	topic                     string
	key, value                []byte
	eventID                   [16]byte
	eventType, aggType, aggID string
	aggVersion                *int64
	headers                   []byte
	createdAt                 time.Time
}

// read returns the next BatchSize unpublished rows in id order, skipping
// the rows of the batch still in flight (exclude).
func (r *Relay) read(ctx context.Context, exclude []int64) ([]outboxRow, error) {
	where := "WHERE id <> ALL($2::bigint[]) " // hashed by PostgreSQL 15+
	if r.cfg.Retention > 0 {
		where += "AND published_at IS NULL "
	}
	if exclude == nil {
		exclude = []int64{}
	}
	rows, err := r.pool.Query(ctx, `SELECT id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at
		FROM `+r.table+` `+where+`ORDER BY id LIMIT $1`, r.cfg.BatchSize, exclude)
	if err != nil {
		return nil, fmt.Errorf("reading the outbox: %w", err)
	}
	batch := make([]outboxRow, 0, r.cfg.BatchSize)
	for rows.Next() {
		var o outboxRow
		if err := rows.Scan(&o.id, &o.topic, &o.key, &o.value, &o.eventID, &o.eventType, &o.aggType, &o.aggID, &o.aggVersion, &o.headers, &o.createdAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the outbox: %w", err)
		}
		batch = append(batch, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the outbox: %w", err)
	}
	return batch, nil
}

// DrainWithoutKafka empties the outbox with exactly the relay's queries and
// batch size but no Kafka: the SQL-only ceiling `eventline bench relay`
// compares the relay with. It returns the rows drained.
func (r *Relay) DrainWithoutKafka(ctx context.Context) (int, error) {
	total := 0
	for {
		batch, err := r.read(ctx, nil)
		if err != nil {
			return total, err
		}
		if len(batch) == 0 {
			return total, nil
		}
		done := make([]int64, len(batch))
		for i := range batch {
			if _, err := record(&batch[i]); err != nil { // the same per-row work
				return total, err
			}
			done[i] = batch[i].id
		}
		if err := r.settle(ctx, done, nil, nil); err != nil {
			return total, err
		}
		total += len(batch)
	}
}

// inflight is a batch whose records were handed to the Kafka client.
type inflight struct {
	rows    []outboxRow
	results []error
	wg      sync.WaitGroup
	start   time.Time
}

func (f *inflight) ids() []int64 {
	ids := make([]int64, len(f.rows))
	for i := range f.rows {
		ids[i] = f.rows[i].id
	}
	return ids
}

// produce hands every row to the Kafka client in id order and returns at
// once; finish waits for the acks.
func (r *Relay) produce(pctx context.Context, rows []outboxRow, start time.Time) *inflight {
	f := &inflight{rows: rows, results: make([]error, len(rows)), start: start}
	f.wg.Add(len(rows))
	for i := range rows {
		rec, err := record(&rows[i])
		if err != nil {
			f.results[i] = err
			f.wg.Done()
			continue
		}
		if r.tracing { // the publish span's parent: the row's stored context
			rec.Context = propagation.TraceContext{}.Extract(pctx, kotel.NewRecordCarrier(rec))
		}
		r.kafka.Produce(pctx, rec, func(_ *kgo.Record, err error) {
			f.results[i] = err
			f.wg.Done()
		})
	}
	return f
}

// finish waits for f's acks, then deletes (or marks) the published rows and
// parks the permanently failed ones in one transaction.
func (r *Relay) finish(pctx context.Context, f *inflight) error {
	// The idempotent producer does not fail a record whose outcome is
	// unknown (sent, no answer) when its context is cancelled, so a broker
	// that vanished mid-request could hold this wait forever. Once pctx
	// ends (ShutdownTimeout after shutdown), give the batch up unsettled:
	// its rows stay and are published again (duplicates, not loss).
	acked := make(chan struct{})
	go func() { f.wg.Wait(); close(acked) }()
	select {
	case <-acked:
	case <-pctx.Done():
		return fmt.Errorf("%w: %d records without an answer from the broker", errAbandoned, len(f.rows))
	}
	var done, parkIDs []int64
	var parkErrs []string
	var transient error
	for i, err := range f.results {
		switch {
		case err == nil:
			done = append(done, f.rows[i].id)
		case permanent(err) || errors.Is(err, errBadHeaders):
			parkIDs = append(parkIDs, f.rows[i].id)
			parkErrs = append(parkErrs, err.Error())
		default:
			if transient == nil {
				transient = err
			}
		}
	}
	if err := r.settle(pctx, done, parkIDs, parkErrs); err != nil {
		// The records are on Kafka but the rows remain: they are
		// published again (duplicates, never loss).
		return err
	}
	r.published.Add(uint64(len(done)))
	r.parked.Add(uint64(len(parkIDs)))
	r.batches.Add(1)
	r.lastBatch.Store(int64(time.Since(f.start)))
	for i, id := range parkIDs {
		r.cfg.Logger.Error("relay: parked an outbox row", "id", id, "err", parkErrs[i])
	}
	if transient != nil {
		return fmt.Errorf("producing: %w", transient)
	}
	return nil
}

// drain publishes until a read comes back short (caught up). It keeps two
// batches in flight: while batch N waits for its acks, batch N+1 (which
// skips N's rows) is read and handed to the client. Records are produced in
// id order across batches, and the idempotent producer keeps that order per
// partition, so per-aggregate order holds. A row of an aggregate that
// commits late (with a lower id than rows already read) is never overtaken
// by a later row of the same aggregate: the producer's advisory lock means
// that later row did not exist before the late one committed, and each read
// takes the lowest unpublished ids.
func (r *Relay) drain(ctx context.Context, lost *atomic.Bool) error {
	// Produce with a context that survives shutdown for ShutdownTimeout:
	// batches in flight are finished, not abandoned.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-pctx.Done():
		}
	})
	defer stop()

	var prev *inflight
	settle := func() error {
		if prev == nil {
			return nil
		}
		f := prev
		prev = nil
		return r.finish(pctx, f)
	}
	for {
		if ctx.Err() != nil || lost.Load() {
			return settle()
		}
		var exclude []int64
		if prev != nil {
			exclude = prev.ids()
		}
		start := time.Now()
		rows, err := r.read(ctx, exclude)
		if err != nil {
			return errors.Join(err, settle())
		}
		var cur *inflight
		if len(rows) > 0 {
			cur = r.produce(pctx, rows, start)
		}
		if err := settle(); err != nil {
			if cur != nil {
				_ = r.finish(pctx, cur) // settle what was produced; the error wins
			}
			return err
		}
		prev = cur
		if len(rows) < r.cfg.BatchSize {
			return settle()
		}
	}
}

var errBadHeaders = errors.New("outbox row has malformed headers")

// errAbandoned: a batch's acks did not come before shutdown's deadline.
var errAbandoned = errors.New("batch abandoned at shutdown")

func record(o *outboxRow) (*kgo.Record, error) {
	var stored [][2]string
	if err := json.Unmarshal(o.headers, &stored); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadHeaders, err)
	}
	h := make([]kgo.RecordHeader, 0, 5+len(stored))
	h = append(h,
		kgo.RecordHeader{Key: "eventline-event-id", Value: []byte(uuidString(o.eventID))},
		kgo.RecordHeader{Key: "eventline-event-type", Value: []byte(o.eventType)},
		kgo.RecordHeader{Key: "eventline-aggregate-type", Value: []byte(o.aggType)},
		kgo.RecordHeader{Key: "eventline-aggregate-id", Value: []byte(o.aggID)},
	)
	if o.aggVersion != nil {
		h = append(h, kgo.RecordHeader{Key: "eventline-aggregate-version", Value: fmt.Appendf(nil, "%d", *o.aggVersion)})
	}
	for _, kv := range stored {
		h = append(h, kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])})
	}
	return &kgo.Record{Topic: o.topic, Key: o.key, Value: o.value, Headers: h}, nil
}

func uuidString(b [16]byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 36)
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexd[c>>4], hexd[c&0xf]
		j += 2
	}
	return string(out)
}

// settle removes (or marks) the published rows and moves the parked ones,
// in one transaction.
func (r *Relay) settle(ctx context.Context, done, parkIDs []int64, parkErrs []string) error {
	if len(done) == 0 && len(parkIDs) == 0 {
		return nil
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("settling the batch: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if len(parkIDs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+r.park+` (id, topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id, aggregate_version, headers, created_at, error)
			SELECT o.id, o.topic, o.record_key, o.record_value, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id, o.aggregate_version, o.headers, o.created_at, e.err
			FROM `+r.table+` o JOIN unnest($1::bigint[], $2::text[]) AS e(id, err) ON o.id = e.id
			ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, parked_at = clock_timestamp()`, parkIDs, parkErrs); err != nil {
			return fmt.Errorf("parking rows: %w", err)
		}
		done = append(done, parkIDs...)
	}
	if r.cfg.Retention > 0 && len(done) > len(parkIDs) {
		if _, err := tx.Exec(ctx, `UPDATE `+r.table+` SET published_at = clock_timestamp() WHERE id = ANY($1)`, done[:len(done)-len(parkIDs)]); err != nil {
			return fmt.Errorf("marking published rows: %w", err)
		}
		if len(parkIDs) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE id = ANY($1)`, parkIDs); err != nil {
				return fmt.Errorf("removing parked rows: %w", err)
			}
		}
	} else if _, err := tx.Exec(ctx, `DELETE FROM `+r.table+` WHERE id = ANY($1)`, done); err != nil {
		return fmt.Errorf("deleting published rows: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("settling the batch: %w", err)
	}
	return nil
}

func (r *Relay) cleanup(ctx context.Context) error {
	_, err := r.pool.Exec(ctx, `DELETE FROM `+r.table+` WHERE published_at < clock_timestamp() - make_interval(secs => $1)`, r.cfg.Retention.Seconds())
	return err
}

// Backlog reports the unpublished rows and the age of the oldest one: the
// relay's lag behind committed business transactions.
func (r *Relay) Backlog(ctx context.Context) (rows int64, oldest time.Duration, err error) {
	where := ""
	if r.cfg.Retention > 0 {
		where = " WHERE published_at IS NULL"
	}
	var age *float64
	err = r.pool.QueryRow(ctx, `SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8 FROM `+r.table+where).Scan(&rows, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the backlog: %w", err)
	}
	if age != nil {
		oldest = time.Duration(*age * float64(time.Second))
	}
	return rows, oldest, nil
}
