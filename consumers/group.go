package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

// DefaultRetryDelays are the delays of retry.1, retry.2, retry.3.
var DefaultRetryDelays = pipeline.DefaultRetryDelays

// Config configures a Group.
type Config struct {
	// Group is the consumer group: the Kafka group id of the source
	// consumer (the retry consumer uses Group+".retry"), the dedupe scope
	// and part of the retry and DLT topic names.
	Group string
	// Topics are the source topics.
	Topics  []string
	Brokers []string
	// DB is where handlers apply effects and the dedupe rows live.
	DB *pgxpool.Pool
	// Schema is the PostgreSQL schema of eventline's tables (dedupe,
	// chain), as given to migrate. Default "public".
	Schema string
	// Serde decodes values (Confluent framing, registry lookups cached).
	Serde *schemas.Serde
	// Handler applies one event; BatchHandler (optional) a partition's
	// batch at once. At least one is required. A Mux gives typed
	// handlers per event type (Handler: mux.Handler(), Events:
	// mux.Events()).
	Handler      HandlerFunc
	BatchHandler BatchHandlerFunc
	// Events are zero values of the generated types payloads decode into
	// (e.g. &payments.PaymentCaptured{}), read with each type's schema
	// (reader-side resolution against the record's writer schema). Events
	// of other types reach handlers in the generic form (map[string]any).
	Events []schemas.Event
	// EventID chooses the dedupe key of records without an
	// eventline-event-id header (written by other producers). Default
	// DefaultEventID: derived from the record's source topic, partition
	// and offset.
	EventID EventIDFunc
	// RetryDelays: one retry topic per delay. Default: Pipeline's
	// consumers.retry_delays when Pipeline is set, else
	// DefaultRetryDelays. Empty but non-nil: no retry topics (failures go
	// to the DLT at once).
	RetryDelays []time.Duration
	// Pipeline, when set, gives RetryDelays its default (the team's
	// eventline.yaml).
	Pipeline *pipeline.Pipeline
	// KeyOrder keeps a key's events in order across retries: while one is
	// in the retry chain, later events of the same key follow it there.
	KeyOrder bool
	// CreateTopics lets the group create missing retry and DLT topics
	// (with the source's partition count and ReplicationFactor, -1 =
	// broker default). Otherwise a missing one is a startup error.
	CreateTopics      bool
	ReplicationFactor int16
	// DedupeRetention: dedupe rows older than this are deleted. It must
	// exceed the longest time a record can be redelivered. Default 7 days;
	// negative keeps them forever.
	DedupeRetention time.Duration
	// CommitInterval between commits of marked offsets. Default 1s.
	CommitInterval time.Duration
	// MaxPollRecords bounds one poll (and so one transaction per
	// partition). Default 10000.
	MaxPollRecords int
	// MaxBackoff caps the wait between retries of a failing database or
	// broker call. Default 5s.
	MaxBackoff time.Duration
	// ShutdownTimeout bounds finishing in-flight batches after ctx ends.
	// Default 30s.
	ShutdownTimeout time.Duration
	// KafkaOpts are extra franz-go options for every client (TLS, SASL...);
	// ConsumerOpts only for the two group consumers (session timeout,
	// instance id, fetch sizes...).
	KafkaOpts    []kgo.Opt
	ConsumerOpts []kgo.Opt
	Logger       *slog.Logger
	// TracerProvider, when set, traces the group: kotel receive spans on
	// the consumers, a process span per handler call, kotel publish spans
	// on retry and DLT copies (children of the failed attempt's process
	// span, so retries stay in the event's trace).
	TracerProvider trace.TracerProvider
	// OnAssigned and OnRevoked observe the source consumer's partitions.
	OnAssigned, OnRevoked func(map[string][]int32)
	// AfterApply runs after a batch's transaction commits and its retry
	// and DLT copies are acknowledged, before its offsets are marked.
	AfterApply func(results []Result)
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = migrate.DefaultSchema
	}
	if c.RetryDelays == nil {
		c.RetryDelays = DefaultRetryDelays
		if c.Pipeline != nil && c.Pipeline.Consumers.RetryDelays != nil {
			c.RetryDelays = c.Pipeline.Consumers.RetryDelays
		}
	}
	if c.DedupeRetention == 0 {
		c.DedupeRetention = 7 * 24 * time.Hour
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 10000
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("consumers: Group is required"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("consumers: Topics are required"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("consumers: Brokers are required"))
	}
	if c.DB == nil {
		errs = append(errs, errors.New("consumers: DB is required"))
	}
	if c.Serde == nil {
		errs = append(errs, errors.New("consumers: Serde is required"))
	}
	if c.Handler == nil && c.BatchHandler == nil {
		errs = append(errs, errors.New("consumers: a Handler or BatchHandler is required"))
	}
	if _, err := newTypeSet(c.Events); err != nil {
		errs = append(errs, err)
	}
	for i, d := range c.RetryDelays {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("consumers: RetryDelays[%d] must be positive", i))
		}
	}
	return errors.Join(errs...)
}

// Stats are a Group's counters since Run started.
type Stats struct {
	Applied, Duplicates, Retried, DeadLettered, Deferred int64
	// RetryLatenessP99 is the 99th percentile of (processed - due) over
	// the last retry records processed.
	RetryLatenessP99 time.Duration
	RetryProcessed   int64
}

// Group runs a consumer group: the source topics and, in a second Kafka
// group, their retry topics.
type Group struct {
	cfg     Config
	applier *Applier
	stage   map[string]int      // topic -> 0 source, n retry.n
	next    map[string][]string // source topic -> stage topics
	prod    *kgo.Client

	applied, duplicates, retried, dead, deferred, retryProcessed atomic.Int64
	joined                                                       [2]atomic.Bool // source, retry consumer
	applyHist                                                    atomic.Pointer[metric.Float64Histogram]
	running                                                      atomic.Pointer[kgo.Client] // prod while Run runs: metrics read lag through it
	started                                                      atomic.Bool                // Run was called: a Group runs once

	origins sync.Map // tp -> *sync.Mutex, see originLock

	latMu    sync.Mutex
	lateness []time.Duration // ring
	latPos   int
}

// New validates cfg and returns a Group; Run starts it.
func New(cfg Config) (*Group, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := NewApplier(cfg.Group, cfg.Schema, cfg.Serde, cfg.Handler).WithKeyOrder(cfg.KeyOrder).WithEvents(cfg.Events...).WithEventID(cfg.EventID)
	if cfg.BatchHandler != nil {
		a.WithBatchHandler(cfg.BatchHandler)
	}
	a.WithTracing(cfg.TracerProvider)
	g := &Group{cfg: cfg, applier: a, stage: map[string]int{}, next: map[string][]string{}, lateness: make([]time.Duration, 0, 4096)}
	for _, t := range cfg.Topics {
		st := stageTopics(t, cfg.Group, len(cfg.RetryDelays))
		g.next[t] = st
		for i, name := range st[:len(st)-1] {
			g.stage[name] = i
		}
	}
	return g, nil
}

// Stats returns the counters.
func (g *Group) Stats() Stats {
	s := Stats{Applied: g.applied.Load(), Duplicates: g.duplicates.Load(), Retried: g.retried.Load(),
		DeadLettered: g.dead.Load(), Deferred: g.deferred.Load(), RetryProcessed: g.retryProcessed.Load()}
	g.latMu.Lock()
	l := slices.Clone(g.lateness)
	g.latMu.Unlock()
	if len(l) > 0 {
		slices.Sort(l)
		s.RetryLatenessP99 = l[(len(l)*99-1)/100]
	}
	return s
}

func (g *Group) noteLateness(d time.Duration) {
	g.latMu.Lock()
	if len(g.lateness) < cap(g.lateness) {
		g.lateness = append(g.lateness, d)
	} else {
		g.lateness[g.latPos] = d
		g.latPos = (g.latPos + 1) % len(g.lateness)
	}
	g.latMu.Unlock()
}

// closeGrace is how long Run waits, past ShutdownTimeout, for its Kafka
// clients to close. Their contexts have ended by then, so closing only
// fails what is still in flight and stops goroutines; the wait is a safety
// net.
const closeGrace = time.Second

// Run consumes until ctx ends, then finishes the in-flight batches,
// commits the marked offsets and leaves both groups, all within
// ShutdownTimeout of ctx ending, even against a broker that stopped
// answering (closing the Kafka clients may take up to 1 s more). Offsets it
// could not commit in time are delivered again and deduplicated.
//
// It returns an error only for a failed startup (bad topics, unreachable
// cluster, client options a consumer rejects): when one part of the group
// fails, the others are stopped and Run returns the error without waiting
// for ctx.
//
// A Group runs once: a second call, concurrent or after the first returned,
// returns ErrAlreadyRunning.
func (g *Group) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	log := g.cfg.Logger.With("group", g.cfg.Group)
	// runCtx ends with ctx or when a part fails. grace ends ShutdownTimeout
	// later: the in-flight batches, the final commits and leaving the
	// groups share it. The clients close concurrently (closers); Run waits
	// for them until closing ends, closeGrace after grace.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	grace, stopGrace := outlast(runCtx, g.cfg.ShutdownTimeout)
	defer stopGrace()
	closing, stopClosing := outlast(grace, closeGrace)
	defer stopClosing()
	var closers sync.WaitGroup

	prod, err := kgo.NewClient(append(append([]kgo.Opt{
		kgo.SeedBrokers(g.cfg.Brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.UnknownTopicRetries(-1),
	}, g.kafkaOpts(false)...), kgo.WithContext(grace))...) // see consume
	if err != nil {
		return fmt.Errorf("consumers: kafka client: %w", err)
	}
	defer func() {
		stop()
		closers.Go(prod.Close)
		closed := make(chan struct{})
		go func() { closers.Wait(); close(closed) }()
		select {
		case <-closed:
		case <-closing.Done():
			log.Warn("consumers: Kafka clients did not close in time; they finish closing in the background")
		}
	}()
	g.prod = prod
	g.running.Store(prod)
	defer g.running.Store(nil)
	if err := g.preflight(ctx, prod, log); err != nil {
		return err
	}

	// The parts share runCtx: the first to fail stops the others, which
	// would otherwise run until ctx ends.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	part := func(run func() error) {
		wg.Go(func() {
			if err := run(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				stop()
			}
		})
	}
	part(func() error { return g.consume(runCtx, grace, &closers, false) })
	if len(g.cfg.RetryDelays) > 0 {
		part(func() error { return g.consume(runCtx, grace, &closers, true) })
	}
	part(func() error { g.expireDedupe(runCtx); return nil })
	wg.Wait()
	return errors.Join(errs...)
}

// Preflight checks (or, with CreateTopics, creates) the retry and DLT
// topics, as Run does first.
func (g *Group) Preflight(ctx context.Context) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(g.cfg.Brokers...)}, g.cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("consumers: kafka client: %w", err)
	}
	defer cl.Close()
	return g.preflight(ctx, cl, g.cfg.Logger.With("group", g.cfg.Group))
}

func (g *Group) preflight(ctx context.Context, cl *kgo.Client, log *slog.Logger) error {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	created, err := preflight(pctx, kadm.NewClient(cl), g.cfg.Group, g.cfg.Topics, len(g.cfg.RetryDelays), g.cfg.CreateTopics, g.cfg.ReplicationFactor)
	if err != nil {
		return fmt.Errorf("consumers: group %s: %w", g.cfg.Group, err)
	}
	for _, t := range created {
		log.Info("consumers: created topic", "topic", t)
	}
	return nil
}

// consume runs one Kafka group: the source topics, or (retries) the retry
// topics, whose records wait for their due time. It polls until ctx ends;
// batches in flight, the final commit and the group leave get until grace
// ends; the client is closed in closers (see Run).
func (g *Group) consume(ctx, grace context.Context, closers *sync.WaitGroup, retries bool) error {
	log := g.cfg.Logger.With("group", g.cfg.Group, "retries", retries)
	groupID, topics := g.cfg.Group, g.cfg.Topics
	if retries {
		groupID = g.cfg.Group + ".retry"
		topics = nil
		for _, t := range g.cfg.Topics {
			st := g.next[t]
			topics = append(topics, st[1:len(st)-1]...)
		}
	}
	w := &waiting{parts: map[tp][]*kgo.Record{}, paused: map[tp]bool{}}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(g.cfg.Brokers...),
		kgo.ConsumerGroup(groupID),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(g.cfg.CommitInterval),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Debug("consumers: assigned", "partitions", m)
			g.joined[boolIndex(retries)].Store(true)
			if !retries && g.cfg.OnAssigned != nil {
				g.cfg.OnAssigned(m)
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			log.Debug("consumers: revoked", "partitions", m)
			if retries {
				w.drop(cl, m)
			}
			// ctx is the client's, which ends with grace (see
			// WithContext below): the final leave's commit cannot
			// outlast the shutdown budget.
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				log.Warn("consumers: committing offsets on revoke failed (the records will be delivered again and deduplicated)", "err", err)
			}
			if !retries && g.cfg.OnRevoked != nil {
				g.cfg.OnRevoked(m)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			log.Warn("consumers: partitions lost", "partitions", m)
			g.joined[boolIndex(retries)].Store(false)
			if retries {
				w.drop(cl, m)
			}
			if !retries && g.cfg.OnRevoked != nil {
				g.cfg.OnRevoked(m)
			}
		}),
	}, g.kafkaOpts(true)...)
	if retries {
		// A partition resumed while a fetch long-polls the others joins
		// the next fetch: keep that wait short.
		opts = append(opts, kgo.FetchMaxWait(retryFetchMaxWait))
	}
	// The client's context ends with grace: its requests (the revoke's
	// commit, the LeaveGroup, the fetch sessions' and telemetry's goodbyes)
	// then fail at once instead of waiting for a broker that does not
	// answer, and Close returns. Last, so that no option overrides it.
	opts = append(append(opts, g.cfg.ConsumerOpts...), kgo.WithContext(grace))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consumers: %s consumer: kafka client: %w", groupID, err)
	}
	defer g.finish(cl, grace, closers, log) // leaves the group (the revoke commits the marks), closes
	defer g.joined[boolIndex(retries)].Store(false)

	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if due, ok := w.earliest(); ok {
			pollCtx, cancel = context.WithDeadline(ctx, due)
		}
		fetches := cl.PollRecords(pollCtx, g.cfg.MaxPollRecords)
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				log.Warn("consumers: fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		batches := map[tp][]*kgo.Record{}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				batches[tp{p.Topic, p.Partition}] = p.Records
			}
		})
		if retries {
			batches = w.admit(cl, batches, time.Now())
		}
		// Processing outlives ctx until grace ends: a batch in flight
		// at shutdown is finished, not abandoned.
		work, stop := context.WithCancel(grace)
		var pwg sync.WaitGroup
		var mu sync.Mutex
		var done []*kgo.Record
		for _, recs := range batches {
			pwg.Go(func() {
				if g.process(work, recs, log) {
					mu.Lock()
					done = append(done, recs[len(recs)-1])
					mu.Unlock()
				}
			})
		}
		pwg.Wait()
		stop()
		cl.MarkCommitRecords(done...)
		cl.AllowRebalance()
	}
}

// kafkaOpts are the user's options plus, when tracing, kotel's hooks.
func (g *Group) kafkaOpts(consumer bool) []kgo.Opt {
	opts := slices.Clone(g.cfg.KafkaOpts)
	if g.cfg.TracerProvider != nil {
		topts := []kotel.TracerOpt{kotel.TracerProvider(g.cfg.TracerProvider), kotel.TracerPropagator(propagation.TraceContext{})}
		if consumer {
			topts = append(topts, kotel.ConsumerGroup(g.cfg.Group))
		}
		opts = append(opts, kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(topts...))).Hooks()...))
	}
	return opts
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// finish leaves the group, which commits the marked offsets (the revoke
// does), and starts closing cl in closers. The commit and the leave give up
// when grace ends (the client's context ends with it).
//
// There is no commit before the leave: a commit waits for the commit before
// it whatever its own context says (franz-go keeps commits in order), and
// an autocommit in flight to a broker that stopped answering would hold it
// until grace ends. Leaving cancels the group's context, which ends that
// autocommit; the revoke then commits.
func (g *Group) finish(cl *kgo.Client, grace context.Context, closers *sync.WaitGroup, log *slog.Logger) {
	cl.AllowRebalance() // leaving revokes, which BlockRebalanceOnPoll holds until now
	if err := cl.LeaveGroupContext(grace); err != nil {
		log.Warn("consumers: leaving the group failed or timed out (its partitions move to other members when the session times out)", "err", err)
	}
	closers.Go(cl.Close)
}

// outlast returns a context that ends d after parent does, or when stop is
// called: work begun before a shutdown gets d to finish.
func outlast(parent context.Context, d time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stopAfter := context.AfterFunc(parent, func() {
		t := time.AfterFunc(d, cancel)
		<-ctx.Done()
		t.Stop()
	})
	return ctx, func() { stopAfter(); cancel() }
}

// process applies one partition's records and forwards the failed and
// deferred ones; it retries database and broker errors until they pass or
// ctx ends (false: nothing may be marked).
func (g *Group) process(ctx context.Context, recs []*kgo.Record, log *slog.Logger) bool {
	stage := g.stage[recs[0].Topic]
	steps := len(g.cfg.RetryDelays)
	var results []Result
	start := time.Now()
	// A retry batch and a source batch of the same source partition touch
	// the same keys' rows; run concurrently they lock them in different
	// orders and deadlock (a second each, at deadlock_timeout). In one
	// process they take turns instead.
	mu := g.originLock(originOf(recs[0]))
	mu.Lock()
	if stage > 0 { // lateness: due time to the start of the apply
		now := time.Now()
		for _, r := range recs {
			if due := dueAt(r); !due.IsZero() {
				g.noteLateness(now.Sub(due))
			}
		}
		g.retryProcessed.Add(int64(len(recs)))
	}
	ok := g.retryForever(ctx, log, "apply", func() error {
		var err error
		results, err = g.applier.apply(ctx, g.cfg.DB, recs, stage == steps, func() { mu.Unlock(); mu.Lock() })
		return err
	})
	mu.Unlock()
	if !ok {
		return false
	}
	now := time.Now()
	source := originOf(recs[0]).topic
	var out []*kgo.Record
	dest := make([]string, len(results))
	var applied, dups, retried, dead, deferred int64
	for i, r := range results {
		switch r.Outcome {
		case Applied:
			applied++
		case Duplicate:
			dups++
		case Failed, Deferred:
			class, cause := classify(r)
			nextStage := stage + 1
			if r.Outcome == Failed && IsPermanent(r.Err) {
				nextStage = steps + 1
			}
			st := g.next[source]
			if st == nil { // a copy of a topic this group no longer consumes
				st = stageTopics(source, g.cfg.Group, steps)
			}
			var due time.Time
			if nextStage <= steps {
				due = now.Add(g.cfg.RetryDelays[nextStage-1])
				retried++
			} else {
				dead++
			}
			if r.Outcome == Deferred {
				deferred++
			}
			dest[i] = st[nextStage]
			cp := forwardCopy(r.Record, st[nextStage], g.cfg.Group, attemptOf(r.Record)+1, due, class, cause, now)
			if g.cfg.TracerProvider != nil {
				cp.Context = recordTrace(ctx, r.Record) // keep ctx's cancellation, continue the trace
			}
			out = append(out, cp)
		}
	}
	if len(out) > 0 && !g.retryForever(ctx, log, "produce retry/DLT copies", func() error {
		return g.prod.ProduceSync(ctx, out...).FirstErr()
	}) {
		return false
	}
	g.applied.Add(applied)
	g.duplicates.Add(dups)
	g.retried.Add(retried)
	g.dead.Add(dead)
	g.deferred.Add(deferred)
	for i, r := range results {
		if r.Outcome != Failed {
			continue
		}
		level := slog.LevelDebug // on its way through the retry chain
		if dest[i] == DLTTopic(source, g.cfg.Group) {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "consumers: event failed", "topic", r.Record.Topic, "partition", r.Record.Partition, "offset", r.Record.Offset,
			"event_id", headerOr(r.Record, HeaderEventID), "attempt", attemptOf(r.Record), "to", dest[i], "err", r.Err)
	}
	if h := g.applyHist.Load(); h != nil {
		(*h).Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("group", g.cfg.Group), attribute.String("topic", source)))
	}
	if g.cfg.AfterApply != nil {
		g.cfg.AfterApply(results)
	}
	return true
}

// originLock is the mutex of a source partition (see process).
func (g *Group) originLock(o origin) *sync.Mutex {
	k := tp{o.topic, o.partition}
	if mu, ok := g.origins.Load(k); ok {
		return mu.(*sync.Mutex)
	}
	mu, _ := g.origins.LoadOrStore(k, &sync.Mutex{})
	return mu.(*sync.Mutex)
}

func headerOr(rec *kgo.Record, key string) string {
	v, _ := header(rec, key)
	return v
}

func classify(r Result) (string, error) {
	if r.Outcome == Deferred {
		return ClassKeyOrder, errors.New("an earlier event of this key is in the retry chain")
	}
	var pe *permanentError
	switch {
	case errors.Is(r.Err, ErrNoEventID):
		return ClassNoEventID, r.Err
	case errors.As(r.Err, &pe):
		return ClassPermanent, r.Err
	case schemas.IsPermanent(r.Err):
		return ClassDecode, r.Err
	}
	return ClassHandler, r.Err
}

// retryForever runs fn until it succeeds or ctx ends, with capped
// exponential backoff.
func (g *Group) retryForever(ctx context.Context, log *slog.Logger, what string, fn func() error) bool {
	backoff := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("consumers: "+what+" failed; retrying", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(backoff*2, g.cfg.MaxBackoff)
	}
}

// expireDedupe deletes dedupe rows older than the retention, in bounded
// batches, every tenth of the retention (at most hourly).
func (g *Group) expireDedupe(ctx context.Context) {
	if g.cfg.DedupeRetention < 0 {
		return
	}
	every := max(min(g.cfg.DedupeRetention/10, time.Hour), time.Second)
	table := g.applier.dedupe
	for {
		for {
			tag, err := g.cfg.DB.Exec(ctx, `DELETE FROM `+table+` WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM `+table+` WHERE group_id = $1 AND applied_at < now() - $2::interval LIMIT 10000))`,
				g.cfg.Group, g.cfg.DedupeRetention)
			if err != nil {
				if ctx.Err() == nil {
					g.cfg.Logger.Warn("consumers: expiring dedupe rows failed", "group", g.cfg.Group, "err", err)
				}
				break
			}
			if tag.RowsAffected() < 10000 {
				break
			}
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

type tp struct {
	topic     string
	partition int32
}

// waiting holds retry records that are not due yet, per partition; a
// partition with a waiting head is paused so that only it stops.
type waiting struct {
	mu     sync.Mutex
	parts  map[tp][]*kgo.Record
	paused map[tp]bool
}

// prefetch is how far ahead of their due time the retry consumer keeps
// fetching: a partition is paused only while the records it holds reach
// further than this, and resumed when they no longer do, so the next
// records are fetched (a fetch can wait up to retryFetchMaxWait) before
// they are due.
const (
	prefetch          = time.Second
	retryFetchMaxWait = 250 * time.Millisecond
)

// earliest is when the retry loop must wake: the first waiting head's due
// time, or the time a paused partition must be resumed to prefetch.
func (w *waiting) earliest() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best time.Time
	for k, recs := range w.parts {
		if d := dueAt(recs[0]); best.IsZero() || d.Before(best) {
			best = d
		}
		if w.paused[k] {
			if r := dueAt(recs[len(recs)-1]).Add(-prefetch); r.Before(best) {
				best = r
			}
		}
	}
	return best, !best.IsZero()
}

// admit adds fresh records behind the waiting ones and returns each
// partition's due prefix. A partition whose waiting records reach more
// than prefetch past now is paused (it holds enough), one that no longer
// does is resumed.
func (w *waiting) admit(cl *kgo.Client, fresh map[tp][]*kgo.Record, now time.Time) map[tp][]*kgo.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, recs := range fresh {
		w.parts[k] = append(w.parts[k], recs...)
	}
	due := map[tp][]*kgo.Record{}
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for k, recs := range w.parts {
		n := 0
		for n < len(recs) && !dueAt(recs[n]).After(now) {
			n++
		}
		if n > 0 {
			due[k] = recs[:n]
		}
		holdsEnough := false
		if n == len(recs) {
			delete(w.parts, k)
		} else {
			w.parts[k] = recs[n:]
			holdsEnough = dueAt(recs[len(recs)-1]).After(now.Add(prefetch))
		}
		switch {
		case holdsEnough && !w.paused[k]:
			w.paused[k] = true
			pause[k.topic] = append(pause[k.topic], k.partition)
		case !holdsEnough && w.paused[k]:
			delete(w.paused, k)
			resume[k.topic] = append(resume[k.topic], k.partition)
		}
	}
	if len(pause) > 0 {
		cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(resume)
	}
	return due
}

// drop forgets the waiting records of revoked partitions (unmarked, so
// their next owner reads them again) and unpauses them.
func (w *waiting) drop(cl *kgo.Client, m map[string][]int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(w.parts, tp{t, p})
			delete(w.paused, tp{t, p})
		}
	}
	cl.ResumeFetchPartitions(m)
}
