package bench

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

// E2EOptions tunes `eventline bench e2e`.
type E2EOptions struct {
	Rate       int           // events per second, one per transaction; default 2000
	Duration   time.Duration // of the measured load; default 10s
	Partitions int           // of the topic; default 6
	// Mode is relay.ModePoll (default: the producer inserts rows) or
	// relay.ModeLogical (the producer writes messages).
	Mode relay.Mode
	// Transactional runs the relay with --transactions; the
	// consumers read committed either way.
	Transactional bool
	Logger        *slog.Logger
	// RelayCommand as in RelayOptions.
	RelayCommand []string
	// GroupCommand runs the consumer group's process (default: this
	// executable's hidden `bench e2e-group`).
	GroupCommand []string
}

// E2EResult is what `bench e2e --json` prints. Latencies are from the
// writer's COMMIT returning: to the event being readable by a plain Kafka
// consumer (so acknowledged by the broker), and to the consumer group's
// apply transaction having committed.
type E2EResult struct {
	Mode          string  `json:"mode"` // how the relay reads the events: "poll" or "logical"
	Transactional bool    `json:"transactional"`
	Rate          int     `json:"rate"`
	Events        int     `json:"events"`
	Seconds       float64 `json:"seconds"`
	// AchievedRate is Events/Seconds: below Rate, the writers could not
	// keep up (the machine is saturated and the latencies include queueing).
	AchievedRate    float64 `json:"achieved_rate"`
	ToKafkaP50Ms    float64 `json:"commit_to_kafka_p50_ms"`
	ToKafkaP99Ms    float64 `json:"commit_to_kafka_p99_ms"`
	ToKafkaP999Ms   float64 `json:"commit_to_kafka_p999_ms"`
	ToAppliedP50Ms  float64 `json:"commit_to_applied_p50_ms"`
	ToAppliedP99Ms  float64 `json:"commit_to_applied_p99_ms"`
	ToAppliedP999Ms float64 `json:"commit_to_applied_p999_ms"`
	// Hops between: the relay handing the record to its Kafka client (the
	// record's timestamp, which the client sets then: milliseconds), and
	// the group's handler starting on it (its apply transaction began).
	ToProducedP50Ms    float64 `json:"commit_to_produced_p50_ms"`
	ToProducedP99Ms    float64 `json:"commit_to_produced_p99_ms"`
	ToProducedP999Ms   float64 `json:"commit_to_produced_p999_ms"`
	ToApplyStartP50Ms  float64 `json:"commit_to_apply_start_p50_ms"`
	ToApplyStartP99Ms  float64 `json:"commit_to_apply_start_p99_ms"`
	ToApplyStartP999Ms float64 `json:"commit_to_apply_start_p999_ms"`
	// CPUPer1000 is the CPU seconds each process (or group of PostgreSQL
	// processes) used per 1,000 events during the load: "relay", "group"
	// (the consumer group's process), "bench" (this process: the writers,
	// the tailing consumer, the bookkeeping; the broker too when it runs in
	// it), "broker" (a local broker process), the PostgreSQL backends of
	// "postgres writers", "postgres relay" and "postgres group" (by their
	// application_name), "postgres walsender" (logical mode's stream) and
	// "postgres background".
	CPUPer1000 map[string]float64 `json:"cpu_seconds_per_1000_events,omitempty"`
	Machine    string             `json:"machine"`
}

func (o E2EOptions) withDefaults() E2EOptions {
	o.Rate = cmp.Or(o.Rate, 2000)
	o.Duration = cmp.Or(o.Duration, 10*time.Second)
	o.Partitions = cmp.Or(o.Partitions, 6)
	o.Mode = cmp.Or(o.Mode, relay.ModePoll)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	return o
}

// E2E appends o.Rate single-event transactions per second for o.Duration
// through the producer, while a relay process publishes them and a consumer
// group process applies each in PostgreSQL, and reports the latency of each
// hop from the commit and the CPU each process used.
func E2E(ctx context.Context, env Env, o E2EOptions) (E2EResult, error) {
	o = o.withDefaults()
	log := o.Logger
	res := E2EResult{Mode: string(o.Mode), Transactional: o.Transactional, Rate: o.Rate, Machine: Machine()}
	s, err := newSetup(ctx, env, o.Mode, o.Partitions, 12, log) // 8 writers, the group's transactions
	if err != nil {
		return res, err
	}
	defer s.close()
	if _, err := s.pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{s.schema, "e2e_applied"}.Sanitize()+` (event_id uuid PRIMARY KEY, total_minor bigint NOT NULL)`); err != nil {
		return res, err
	}
	proc, err := startRelayProcess(env, s, o.Partitions, 10000, o.Transactional, o.RelayCommand)
	if err != nil {
		return res, err
	}
	defer proc.stop()

	var mu sync.Mutex
	committed := map[string]time.Time{}
	inKafka := map[string]time.Time{}
	produced := map[string]time.Time{}
	total := int(float64(o.Rate) * o.Duration.Seconds())
	if o.Rate < 0 || o.Duration < 0 || total < 1 {
		return res, fmt.Errorf("bench e2e: rate %d over %v is no event: both must be positive", o.Rate, o.Duration)
	}
	cctx, cancel := context.WithTimeout(ctx, o.Duration+2*time.Minute)
	defer cancel()

	// The group: the relay creates the topic; the group waits for it.
	if err := waitForTopic(cctx, env, s.topic); err != nil {
		return res, err
	}
	group, err := startGroupProcess(cctx, o.GroupCommand, E2EGroupSpec{Env: env, Schema: s.schema, Topic: s.topic,
		Group: "bench-e2e-" + s.schema, Applied: "e2e_applied", Events: total, Partitions: o.Partitions})
	if err != nil {
		return res, err
	}
	defer group.stop()
	if err := group.wait(cctx, group.assigned, "its partitions were assigned"); err != nil {
		return res, err
	}

	// A plain consumer marks when each event became readable in Kafka.
	tail, err := tailFromEnd(cctx, env, s.topic)
	if err != nil {
		return res, err
	}
	defer tail.Close()
	tailed := make(chan error, 1)
	go func() { tailed <- firstSeen(cctx, tail, &mu, inKafka, produced, total) }()

	// CPU: the processes at the start, and at the end (PostgreSQL's new
	// connections since).
	processes := func() (cpuRoles, error) {
		roles, err := postgresPIDs(cctx, s.pool)
		if err != nil {
			return nil, err
		}
		roles["relay"] = []int{proc.cmd.Process.Pid}
		roles["group"] = []int{group.cmd.Process.Pid}
		roles["bench"] = []int{os.Getpid()}
		if pid := listenerPID(env.Brokers[0]); pid != 0 && pid != os.Getpid() {
			roles["broker"] = []int{pid}
		}
		return roles, nil
	}
	roles, err := processes()
	if err != nil {
		return res, err
	}
	cpuBefore := roles.sample()

	log.Info("bench e2e: appending", "rate", o.Rate, "events", total)
	begin := time.Now()
	if err := appendPaced(cctx, s, o.Rate, total, 8, func(id string, at time.Time) {
		mu.Lock()
		committed[id] = at
		mu.Unlock()
	}); err != nil {
		return res, err
	}
	res.Seconds = time.Since(begin).Seconds()
	if err := <-tailed; err != nil {
		return res, fmt.Errorf("bench e2e: reading the topic: %w", err)
	}
	if err := group.wait(cctx, group.applied, "every event was applied"); err != nil {
		return res, err
	}
	if roles, err = processes(); err != nil {
		return res, err
	}
	cpu := cpuDelta(cpuBefore, roles.sample())
	rep, err := group.finish(cctx)
	if err != nil {
		return res, err
	}

	mu.Lock()
	defer mu.Unlock()
	var toKafka, toApplied, toProduced, toApplyStart []time.Duration
	for id, c := range committed {
		k, ok1 := inKafka[id]
		a, ok2 := rep.Applied[id]
		if !ok1 || !ok2 {
			return res, fmt.Errorf("bench e2e: event %s committed but not seen in Kafka (%v) or applied (%v)", id, ok1, ok2)
		}
		toKafka = append(toKafka, k.Sub(c))
		toApplied = append(toApplied, time.Unix(0, a).Sub(c))
		toProduced = append(toProduced, produced[id].Sub(c))
		toApplyStart = append(toApplyStart, time.Unix(0, rep.Applying[id]).Sub(c))
	}
	res.Events = len(committed)
	res.ToProducedP50Ms, res.ToProducedP99Ms, res.ToProducedP999Ms = ms(percentile(toProduced, 0.5)), ms(percentile(toProduced, 0.99)), ms(percentile(toProduced, 0.999))
	res.ToApplyStartP50Ms, res.ToApplyStartP99Ms, res.ToApplyStartP999Ms = ms(percentile(toApplyStart, 0.5)), ms(percentile(toApplyStart, 0.99)), ms(percentile(toApplyStart, 0.999))
	res.CPUPer1000 = map[string]float64{}
	for role, sec := range cpu {
		res.CPUPer1000[role] = sec / (float64(res.Events) / 1000)
	}
	res.AchievedRate = float64(res.Events) / res.Seconds
	res.ToKafkaP50Ms, res.ToKafkaP99Ms, res.ToKafkaP999Ms = ms(percentile(toKafka, 0.5)), ms(percentile(toKafka, 0.99)), ms(percentile(toKafka, 0.999))
	res.ToAppliedP50Ms, res.ToAppliedP99Ms, res.ToAppliedP999Ms = ms(percentile(toApplied, 0.5)), ms(percentile(toApplied, 0.99)), ms(percentile(toApplied, 0.999))
	return res, nil
}

func eventID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == headers.EventID {
			return string(h.Value)
		}
	}
	return ""
}

// waitForTopic waits until the relay created topic.
func waitForTopic(ctx context.Context, env Env, topic string) error {
	cl, err := env.kafka()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for {
		td, err := adm.ListTopics(ctx, topic)
		if err == nil && td.Has(topic) && td[topic].Err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the relay to create %s: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tailFromEnd is a consumer of every partition of topic from its end now.
func tailFromEnd(ctx context.Context, env Env, topic string) (*kgo.Client, error) {
	cl, err := env.kafka()
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		return nil, err
	}
	start := map[int32]kgo.Offset{}
	ends.Each(func(lo kadm.ListedOffset) { start[lo.Partition] = kgo.NewOffset().At(lo.Offset) })
	// read_committed: what eventline's groups read (the same as
	// read_uncommitted unless the relay is transactional).
	return env.kafka(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}), kgo.FetchMaxWait(50*time.Millisecond),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
}

// firstSeen reads cl until it has seen total distinct event ids, noting
// in seen (guarded by mu) when each was first read: a republished copy is
// not the first sight.
func firstSeen(ctx context.Context, cl *kgo.Client, mu *sync.Mutex, seen, produced map[string]time.Time, total int) error {
	for {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			if id := eventID(r); seen[id].IsZero() {
				seen[id] = now
				produced[id] = r.Timestamp
			}
		})
		n := len(seen)
		mu.Unlock()
		if n >= total {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d of %d events read: %w", n, total, err)
		}
	}
}

// appendPaced commits total single-event transactions at rate per second,
// open loop (event k is due at start + k/rate whatever the previous commit
// took) over writers goroutines, and reports each commit's event id and time.
func appendPaced(ctx context.Context, s *setup, rate, total, writers int, committed func(id string, at time.Time)) error {
	return appendPacedWith(ctx, s.pool, rate, total, writers, func(ctx context.Context, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error {
		return appendEventline(ctx, s, tx, id, agg, rng)
	}, committed)
}

// appendEventline appends one OrderCreated through s's producer in tx.
func appendEventline(ctx context.Context, s *setup, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error {
	return s.prod.Append(ctx, tx, producer.Message{AggregateType: "order", AggregateID: agg, EventID: id, Event: sampleOrder(agg, rng)})
}

// appendPacedWith is appendPaced with write appending the event (id, of
// aggregate agg) in each transaction: to an outbox of another kind.
func appendPacedWith(ctx context.Context, pool *pgxpool.Pool, rate, total, writers int,
	write func(ctx context.Context, tx pgx.Tx, id uuid.UUID, agg string, rng *rand.Rand) error, committed func(id string, at time.Time)) error {
	aggs := make([]string, 1000)
	for i := range aggs {
		aggs[i] = uuid.NewString()
	}
	interval := time.Second / time.Duration(rate)
	begin := time.Now()
	jobs := make(chan int, total)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 4))
			for k := range jobs {
				if d := time.Until(begin.Add(time.Duration(k) * interval)); d > 0 {
					time.Sleep(d) // pacing the load, not synchronising
				}
				id := uuid.New()
				agg := aggs[k%len(aggs)]
				tx, err := pool.Begin(ctx)
				if err == nil {
					err = write(ctx, tx, id, agg, rng)
					if err == nil {
						err = tx.Commit(ctx)
					} else {
						_ = tx.Rollback(ctx)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				committed(id.String(), time.Now())
			}
		})
	}
	for k := range total {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
