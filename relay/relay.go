package relay

import (
	"github.com/eventline/eventline/internal/dsn"
	"github.com/eventline/eventline/internal/kafkalog"

	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
)

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
	state string // quoted eventline_relay_state
	key   string // advisory lock key text
	// tracing: kotel hooks are installed.
	tracing bool
	// kafkaOpts made kafka; a transactional leader's client adds its
	// transactional.id to them (txn.go).
	kafkaOpts []kgo.Opt
	txnID     string        // Config.Transactional: the transactional.id
	posTopic  string        // and the position topic
	policy    policy        // what the pipeline allows (policy.go)
	source    source        // where the leader reads events: the mode (source.go)
	slowAck   time.Duration // how long a wait for acks lasts before each warning

	batchCap sync.Map     // topic -> int32: the topic's max.message.bytes, when smaller than the default
	avgRow   atomic.Int64 // key+value bytes per row of the last batch read (0: none yet)
	lastRead atomic.Int64 // rows of the last read: the next read's starting capacity
	gaps     gaps         // what probes ask about (probe.go)
	floor    idFloor      // where poll-mode reads start (floor.go)
	logHooks *kafkalog.Hooks
	// logical mode: the slot's name once known, the leader's confirmer
	slot      atomic.Pointer[string]
	confirmer atomic.Pointer[confirmer]
	streamed  atomic.Bool // a logical stream started in this Run

	started   atomic.Bool // Run was called: a Relay runs once
	returned  atomic.Bool // Run has returned: Live reports it
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
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("relay: bad database URL %s: %w", dsn.Redact(cfg.DatabaseURL), err)
	}
	// The relay's own commits (deleting or marking published rows, parking)
	// do not wait for their WAL flush: a crash that loses one only leaves
	// published rows in the outbox, which are published again (duplicates,
	// which consumers skip; never a loss). Waiting would add a flush per
	// batch to the writers' queue for the same disk: the writers'
	// transactions ran at 0.47 of business-only with it, 0.51-0.53
	// without (bench append, 8 writers, the relay on the same 2 cores).
	//
	// A transactional relay commits synchronously: its position names the
	// last batch only, so a delete lost in a crash would leave rows the
	// next leader publishes again.
	if _, set := pcfg.ConnConfig.RuntimeParams["synchronous_commit"]; !set && !cfg.Transactional {
		pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	}
	setApplicationName(pcfg.ConnConfig.RuntimeParams)
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("relay: database pool for %s: %w", dsn.Redact(cfg.DatabaseURL), err)
	}
	r := &Relay{
		cfg: cfg, pool: pool, logHooks: kafkalog.New(cfg.Logger, "relay"),
		table:  pgx.Identifier{cfg.Schema, "eventline_outbox"}.Sanitize(),
		park:   pgx.Identifier{cfg.Schema, "eventline_outbox_parked"}.Sanitize(),
		state:  pgx.Identifier{cfg.Schema, "eventline_relay_state"}.Sanitize(),
		key:    "eventline_relay:" + cfg.Schema,
		gaps:   gaps{ttl: cfg.PollInterval},
		policy: newPolicy(cfg.Pipeline), slowAck: slowAckWarning,
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent producer (the default) needs all acks
		kgo.ProducerLinger(producerLinger(cfg)),
		kgo.MaxBufferedRecords(4 * cfg.BatchSize),
		kgo.MaxBufferedBytes(4 * cfg.BatchBytes),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// Retry a missing topic forever, like any transient error: a
		// failed batch must never let a later batch of the same
		// partition overtake it.
		kgo.UnknownTopicRetries(-1),
		// Batches no larger than the topic accepts: a broker rejecting a
		// batch fails every record in it, and the relay would park good
		// rows with the one that is too large.
		kgo.ProducerBatchMaxBytesFn(r.batchMaxBytes),
		// The client rides out a broker failover on its own (retries,
		// then the partition's new leader); these say so in the log.
		r.logHooks.Opt(),
	}
	if cfg.Transactional {
		// Kafka 4 (transaction version 2) answers CONCURRENT_TRANSACTIONS
		// to a transaction's first produce while the previous commit's
		// markers are being written, which the next batch often meets.
		// franz-go retries after a metadata refresh, no sooner than
		// MetadataMinAge after the last one: at its default (5 s) most
		// batches took 5 s on a loaded 3-node cluster.
		opts = append(opts, kgo.MetadataMinAge(txnMetadataMinAge))
	}
	opts = append(opts, cfg.KafkaOpts...)
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
	r.kafka, r.kafkaOpts = cl, opts
	if cfg.Transactional {
		r.txnID = cfg.TransactionalID
		if r.txnID == "" {
			r.txnID = DefaultTransactionalID(pcfg.ConnConfig.Database, cfg.Schema, cfg.Mode)
		}
		r.posTopic = PositionTopic(r.txnID)
	}
	r.source = newSource(r)
	return r, nil
}

// txnMetadataMinAge is a transactional relay's kgo.MetadataMinAge: the
// longest a produce answered CONCURRENT_TRANSACTIONS waits for its retry
// (the Java producer backs off 100 ms).
const txnMetadataMinAge = 100 * time.Millisecond

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
	names := make([]string, 0, len(r.cfg.Pipeline.Topics))
	for _, t := range r.cfg.Pipeline.Topics {
		names = append(names, t.Name)
		// What eventline.yaml asked for first: a real cluster may not
		// describe a topic it has just created (the broker answering has
		// not seen it yet), and batches sized for the default limit would
		// then be refused whole.
		if v, ok := t.Configs["max.message.bytes"]; ok {
			if n, err := strconv.Atoi(v); err == nil {
				r.batchCap.Store(t.Name, int32(min(max(n, 512), defaultBatchMaxBytes)))
			}
		}
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
//
// A Relay opens its database pool and Kafka client in New, because
// Backlog, SlotLag and the metrics use them before, during and after Run;
// Close is their end. A consumer Group has no Close: it opens its Kafka
// clients in Run and closes them before Run returns, and its database pool
// is the caller's.
func (r *Relay) Close() {
	r.kafka.Close()
	r.logHooks.Stop()
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
// outbox, at startup a topic or cluster authorization failure, and in
// logical mode the slot and privilege errors (ErrSlotInvalidated,
// ErrSlotLost, ErrPublicEmit). Each session starts by checking that the
// outbox can be drained, so a standby reports these too.
//
// A Relay runs once: a second call, concurrent or after the first returned,
// returns ErrAlreadyRunning.
func (r *Relay) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer r.returned.Store(true)
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

func (r *Relay) ensureTopics(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(r.kafka)
	for _, t := range r.cfg.Pipeline.Topics {
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
			got, err := r.partitionCount(cctx, t.Name)
			if err != nil {
				return err
			}
			if got < int(t.Partitions) {
				return fmt.Errorf("topic %s has %d partitions, eventline.yaml asks for %d: add partitions deliberately (keys would move) or lower the setting", t.Name, got, t.Partitions)
			}
		default:
			return fmt.Errorf("creating topic %s: %w", t.Name, err)
		}
	}
	if r.posTopic != "" {
		if err := r.ensurePositionTopic(cctx, adm); err != nil {
			return err
		}
	}
	return r.learnBatchLimits(cctx, adm)
}

// ensurePositionTopic creates a transactional relay's position topic: one
// partition (the last record is the position), compacted (only the last
// record per key matters).
func (r *Relay) ensurePositionTopic(ctx context.Context, adm *kadm.Client) error {
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, r.posTopic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		r.cfg.Logger.Info("relay: created topic", "topic", r.posTopic, "partitions", 1)
	case errors.Is(err, kerr.TopicAlreadyExists):
	default:
		return fmt.Errorf("creating topic %s: %w", r.posTopic, err)
	}
	// Until a broker describes the topic (asked uncached), the leader's
	// first position read would find no partition: retried here, at once.
	for {
		n, err := r.partitionCount(ctx, r.posTopic)
		switch {
		case err == nil && n != 1:
			return fmt.Errorf("position topic %s has %d partitions, want 1", r.posTopic, n)
		case err == nil:
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// partitionCount asks a broker, uncached, how many partitions topic has. A
// topic another relay has just created can exist before the broker serves
// its metadata (Kafka answers LEADER_NOT_AVAILABLE or
// UNKNOWN_TOPIC_OR_PARTITION with no partitions for a moment): that is an
// error to retry, not a topic with zero partitions. kadm's ListTopics is not
// used here because the client caches its answer for MetadataMinAge.
func (r *Relay) partitionCount(ctx context.Context, topic string) (int, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, r.kafka)
	if err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, fmt.Errorf("topic %s exists but the broker does not describe it yet: %w", topic, err)
		}
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("topic %s exists but the broker does not describe it yet", topic)
}

// DefaultApplicationName is the application_name the relay's sessions
// carry unless the database URL sets one: pg_stat_activity (and
// log_line_prefix's %a) tell them from the services' own.
const DefaultApplicationName = "eventline-relay"

func setApplicationName(params map[string]string) {
	if _, set := params["application_name"]; !set {
		params["application_name"] = DefaultApplicationName
	}
}

// producerLinger is the Kafka client's linger: in poll mode a drain hands
// its whole batch over at once, and 1ms lets it leave in one request; in
// logical mode events come one by one and Config.Linger gathers them.
func producerLinger(cfg Config) time.Duration {
	if cfg.Mode == ModeLogical {
		return cfg.Linger
	}
	return time.Millisecond
}
