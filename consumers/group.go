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

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"

	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/internal/kafkalog"
)

// Group runs a consumer group: the source topics and, in a second Kafka
// group, their retry topics.
type Group struct {
	cfg     Config
	applier *applier
	// afterApply (hook.AfterApply, set before Run) sees each batch's
	// results once its copies are acknowledged.
	afterApply func([]hook.Result)
	stage      map[string]int      // topic -> 0 source, n retry.n
	next       map[string][]string // source topic -> stage topics
	prod       *kgo.Client
	protocol   atomic.Pointer[Protocol] // resolved from cfg.Protocol when Run starts

	applied, duplicates, retried, dead, deferred, retryProcessed atomic.Int64
	joined                                                       [2]atomic.Bool // source, retry consumer
	applyHist                                                    atomic.Pointer[metric.Float64Histogram]
	running                                                      atomic.Pointer[kgo.Client] // prod while Run runs: metrics read lag through it
	started                                                      atomic.Bool                // Run was called: a Group runs once
	turned                                                       [2]atomic.Int64            // unix ns of each loop's last poll return (source, retry); see Live
	attempted                                                    atomic.Int64               // unix ns of the last retryForever attempt; see Live

	origins sync.Map // tp -> *sync.Mutex, see originLock

	skipMu  sync.Mutex
	skipped map[string]int64 // by event type, see noteSkipped

	latMu    sync.Mutex
	lateness []time.Duration // ring
	latPos   int

	hooksMu  sync.Mutex
	logHooks []*kafkalog.Hooks // the clients' failover logs, stopped when Run returns
}

// New validates cfg and returns a Group; Run starts it.
func New(cfg Config) (*Group, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Group{cfg: cfg, applier: applierFor(cfg), stage: map[string]int{}, next: map[string][]string{}, lateness: make([]time.Duration, 0, 4096)}
	for _, t := range cfg.Topics {
		st := stageTopics(t, cfg.Group, len(cfg.RetryDelays))
		g.next[t] = st
		for i, name := range st[:len(st)-1] {
			g.stage[name] = i
		}
	}
	return g, nil
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
// returns ErrAlreadyRunning. There is no Close: the Kafka clients live
// inside Run and are closed before it returns; DB is the caller's to close.
func (g *Group) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	// Last of the deferred calls: a client still closing in the background
	// logs nothing once Run has returned.
	defer func() {
		g.hooksMu.Lock()
		defer g.hooksMu.Unlock()
		for _, h := range g.logHooks {
			h.Stop()
		}
	}()
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
	}, g.kafkaOpts(false, "retry and DLT producer", log)...), kgo.WithContext(grace))...) // see consume
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
	if err := g.checkTables(ctx, log); err != nil {
		return err
	}
	if err := g.preflight(ctx, prod, log); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	protocol, err := resolveProtocol(pctx, kadm.NewClient(prod), g.cfg.Protocol, g.cfg.InstanceID != "", log)
	cancel()
	g.protocol.Store(&protocol)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consumers: group %s: %w", g.cfg.Group, err)
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

// checkTables makes sure eventline's consumer tables are in Config.Schema
// before anything is consumed: without them every apply would fail and be
// retried for ever ("relation does not exist"), and Run would look healthy.
// A database that cannot be reached yet is not an error here (applies wait
// for it); a table that is not there, or a role that may not use it, is.
func (g *Group) checkTables(ctx context.Context, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, name := range []string{g.applier.dedupe, g.applier.chain} {
		_, err := g.cfg.DB.Exec(cctx, `SELECT 1 FROM `+name+` WHERE false`)
		var pe *pgconn.PgError
		switch {
		case err == nil:
		case errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000"):
			return fmt.Errorf("consumers: group %s: %w: %s does not exist in the group's database (Config.Schema %q): run `eventline migrate --schema %s` (or migrate.Migrate) first: %w",
				g.cfg.Group, ErrNotMigrated, name, g.cfg.Schema, g.cfg.Schema, err)
		case errors.As(err, &pe) && pe.Code == "42501":
			return fmt.Errorf("consumers: group %s: the database role may not use %s: %w", g.cfg.Group, name, err)
		default:
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("consumers: could not check the group's tables; applies will retry until the database answers", "err", err)
			return nil
		}
	}
	return nil
}

func (g *Group) preflight(ctx context.Context, cl *kgo.Client, log *slog.Logger) error {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	created, existed, err := preflight(pctx, kadm.NewClient(cl), g.cfg.Group, g.cfg.Topics, len(g.cfg.RetryDelays), g.cfg.CreateTopics, g.cfg.ReplicationFactor)
	if err != nil {
		return fmt.Errorf("consumers: group %s: %w", g.cfg.Group, err)
	}
	for _, t := range created {
		log.Info("consumers: created topic", "topic", t)
	}
	for _, t := range existed {
		log.Debug("consumers: topic created meanwhile by another client", "topic", t)
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
	client := "consumer" // how its failover log lines name it
	if retries {
		client = "retry consumer"
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(g.cfg.Brokers...),
		kgo.ConsumerGroup(groupID),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Only committed records: a transactional producer's aborted
		// records (a relay's fenced zombie, an aborted batch) are never
		// applied. Without transactions this changes nothing.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
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
	}, append(g.membershipOpts(), g.kafkaOpts(true, client, log)...)...)
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

	turned := &g.turned[boolIndex(retries)]
	flowing := false // the previous poll returned records (see linger)
	for {
		// The loop turns at least every pollTurn, so that Live can tell an
		// idle loop from a stuck one.
		wake := time.Now().Add(pollTurn())
		if due, ok := w.earliest(); ok && due.Before(wake) {
			wake = due
		}
		pollCtx, cancel := context.WithDeadline(ctx, wake)
		polled := time.Now()
		fetches := cl.PollRecords(pollCtx, g.cfg.MaxPollRecords)
		cancel()
		turned.Store(time.Now().UnixNano())
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		if !retries {
			had := fetches.NumRecords() > 0
			fetches = g.linger(ctx, cl, fetches, flowing && time.Since(polled) < g.cfg.Linger)
			flowing = had
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				log.Warn("consumers: fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		batches := map[tp][]*kgo.Record{}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 { // a lingered poll may hold a partition twice, in order
				k := tp{p.Topic, p.Partition}
				batches[k] = append(batches[k], p.Records...)
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
		for _, unit := range g.coalesce(batches) {
			pwg.Go(func() {
				if g.process(work, unit, log) {
					mu.Lock()
					for _, recs := range unit {
						done = append(done, recs[len(recs)-1])
					}
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

// linger returns fs with what arrived during Config.Linger added, when
// fs holds a few records and records are flowing: the previous poll
// returned records too and this one waited less than Linger for its own
// (they were there, or came at once, after the previous batch's apply). A
// record after a quiet spell (an empty poll before it, or a long wait) does
// not linger.
func (g *Group) linger(ctx context.Context, cl *kgo.Client, fs kgo.Fetches, flowing bool) kgo.Fetches {
	n := fs.NumRecords()
	if g.cfg.Linger <= 0 || n == 0 || n >= coalesceMax || !flowing {
		return fs
	}
	t := time.NewTimer(g.cfg.Linger)
	select {
	case <-ctx.Done():
		t.Stop()
		return fs
	case <-t.C:
	}
	// A nil context is franz-go's documented "what is buffered, now" (a
	// done one returns nothing at all).
	//lint:ignore SA1012 see above
	if more := cl.PollRecords(nil, g.cfg.MaxPollRecords-n); more.NumRecords() > 0 {
		fs = append(fs, more...)
	}
	return fs
}

// kafkaOpts are the user's options plus the client's failover log (see
// kafkalog; client names the client in it) and, when tracing, kotel's hooks.
func (g *Group) kafkaOpts(consumer bool, client string, log *slog.Logger) []kgo.Opt {
	h := kafkalog.New(log, client)
	g.hooksMu.Lock()
	g.logHooks = append(g.logHooks, h)
	g.hooksMu.Unlock()
	opts := append(slices.Clone(g.cfg.KafkaOpts), h.Opt())
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
