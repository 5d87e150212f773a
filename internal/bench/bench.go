// Package bench measures the pipeline for `eventline bench`: the relay's
// drain rate against the same run's SQL-only ceiling, live commit-to-Kafka
// latency, the relay's peak memory, and the cost of an outbox append inside
// a business transaction.
//
// The relay, append and e2e benchmarks run in either relay mode
// (relay.ModePoll, the default, or relay.ModeLogical): in logical mode the
// harness creates the publication and the replication slot
// (migrate.SetupLogical), the producers write logical decoding messages
// (producer.ModeLogical), the relay process runs with --mode logical, and
// the relay benchmark's ceiling is the slot's stream decoded with no Kafka
// (the relay's decoding without Kafka) instead of the SQL-only drain. The slots are
// dropped at the end.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// Env names the services a benchmark runs against.
type Env struct {
	Brokers     []string
	RegistryURL string
	DatabaseURL string
	// KafkaOpts and RegistryOpts are the connection settings (TLS, SASL,
	// registry auth). Child processes do not get them from the spec: they
	// read the same environment (connection settings hold secrets).
	KafkaOpts    []kgo.Opt      `json:"-"`
	RegistryOpts []sr.ClientOpt `json:"-"`
}

// consumerDeps are what a benchmark child's consumer group needs of env: a
// pool of at most maxConns connections, named app in pg_stat_activity (""
// leaves it), and a serde of env's registry. The caller closes the pool.
func (env Env) consumerDeps(ctx context.Context, maxConns int32, app string) (*pgxpool.Pool, *schemas.Serde, error) {
	cfg, err := pgxpool.ParseConfig(env.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = maxConns
	if app != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = app
	}
	reg, err := env.registry()
	if err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return pool, schemas.NewSerde(reg), nil
}

// registry is a client of env's registry.
func (env Env) registry() (*sr.Client, error) {
	return sr.NewClient(append([]sr.ClientOpt{sr.URLs(env.RegistryURL)}, env.RegistryOpts...)...)
}

// kafka is a client of env's brokers with opts.
func (env Env) kafka(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(env.Brokers...)}, env.KafkaOpts...), opts...)...)
}

// setup creates a fresh PostgreSQL schema with eventline's tables, a
// pipeline with one topic and a producer for it.
type setup struct {
	pool   *pgxpool.Pool
	schema string
	topic  string
	pipe   *pipeline.Pipeline
	reg    *sr.Client
	prod   *producer.Producer
	mode   relay.Mode
	log    *slog.Logger
	// logical mode: the relay's slot (the first) and any other slot made
	// for the benchmark, all dropped by close, and the publication.
	slots       []string
	publication string
}

// newSetup makes the setup for mode (poll: the default); in logical mode it
// also creates the publication and the relay's slot, and the producer
// writes messages.
func newSetup(ctx context.Context, env Env, mode relay.Mode, partitions int, writers int, log *slog.Logger) (*setup, error) {
	if mode == "" {
		mode = relay.ModePoll
	}
	if mode != relay.ModePoll && mode != relay.ModeLogical {
		return nil, fmt.Errorf("bench: mode %q: want %q or %q", mode, relay.ModePoll, relay.ModeLogical)
	}
	if log == nil {
		log = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(env.DatabaseURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(max(writers+2, 8))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	s := &setup{pool: pool, schema: "bench_" + id, topic: "bench." + id, mode: mode, log: log}
	if _, err := migrate.Migrate(ctx, pool, migrate.Options{Schema: s.schema}); err != nil {
		s.close()
		return nil, err
	}
	pmode := producer.ModePoll
	if mode == relay.ModeLogical {
		pmode = producer.ModeLogical
		// Emitting restricted to the bench's role, as deployed (a no-op
		// when a superuser restricted it before).
		var role string
		if err := pool.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil {
			s.close()
			return nil, err
		}
		opts := migrate.LogicalOptions{Schema: s.schema, Emitters: []string{role}}
		l, err := migrate.SetupLogical(ctx, pool, opts)
		if err != nil {
			if l, nerr := migrate.LogicalNames(ctx, pool, opts); nerr == nil { // what it may have made
				s.slots, s.publication = []string{l.Slot}, l.Publication
			}
			s.close()
			return nil, fmt.Errorf("bench: logical mode: %w", err)
		}
		s.slots, s.publication = []string{l.Slot}, l.Publication
	}
	s.pipe, err = pipeline.Parse(fmt.Appendf(nil, "topics: [{name: %q, partitions: %d, events: [eventline.orders.OrderCreated]}]", s.topic, partitions))
	if err != nil {
		s.close()
		return nil, err
	}
	s.reg, err = env.registry()
	if err != nil {
		s.close()
		return nil, err
	}
	s.prod, err = producer.New(ctx, producer.Config{DB: s.pool, Pipeline: s.pipe, Registry: s.reg, Catalog: events.Catalog(), Events: []schemas.Event{&events.OrderCreated{}}, AutoRegister: true, Schema: s.schema, Mode: pmode})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// orderSchemaID is the registry's id of OrderCreated under the topic's
// subject, as the setup's producer registered it.
func (s *setup) orderSchemaID(ctx context.Context) (int, error) {
	info, _ := events.Catalog().Lookup("eventline.orders.OrderCreated")
	ss, err := s.reg.LookupSchema(ctx, s.pipe.SubjectsFor(info.Name)[0], sr.Schema{Schema: info.Text})
	if err != nil {
		return 0, fmt.Errorf("looking up the benchmark schema: %w", err)
	}
	return ss.ID, nil
}

// close drops the benchmark's replication slots (each once no session
// streams it: a walsender outlives its client briefly), its publication and
// its schema. Run it after stopping the relay process. A slot it cannot
// drop is logged: left behind, it would hold WAL for ever.
func (s *setup) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, slot := range s.slots {
		if err := dropSlot(ctx, s.pool, slot); err != nil {
			s.log.Error("bench: dropping a replication slot failed: drop it by hand (SELECT pg_drop_replication_slot(...)), it holds WAL", "slot", slot, "err", err)
		}
	}
	if s.publication != "" {
		_, _ = s.pool.Exec(ctx, `DROP PUBLICATION IF EXISTS `+pgx.Identifier{s.publication}.Sanitize())
	}
	_, _ = s.pool.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{s.schema}.Sanitize()+` CASCADE`)
	s.pool.Close()
}

// dropSlot drops slot once it is inactive (polled every 50 ms for 30 s at
// most); a slot that does not exist is no error.
func dropSlot(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var active bool
		err := pool.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if !active || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
	return err
}

// createSlot makes another pgoutput slot beside the relay's, dropped by
// close: from now on it holds the same events as the relay's slot.
func (s *setup) createSlot(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name); err != nil {
		return fmt.Errorf("creating replication slot %s: %w", name, err)
	}
	s.slots = append(s.slots, name)
	return nil
}

func sampleOrder(id string, rng *rand.Rand) *events.OrderCreated {
	return &events.OrderCreated{
		OrderID: id, CustomerID: id,
		Lines: []events.OrderLine{
			{ProductID: id, Quantity: int32(1 + rng.IntN(5)), UnitPriceMinor: int64(100 + rng.IntN(10000))},
			{ProductID: id, Quantity: 1, UnitPriceMinor: 999},
		},
		TotalMinor: 12345, Currency: "EUR", CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// percentile returns the p-th percentile (0..1) of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(p * float64(len(ds)-1))
	return ds[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// peakRSS returns VmHWM of process pid (0: this process) in MiB.
func peakRSS(pid int) float64 {
	path := "/proc/self/status"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
