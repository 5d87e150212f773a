// Package bench measures the pipeline for `eventline bench`: the relay's
// drain rate against the same run's SQL-only ceiling, live commit-to-Kafka
// latency, the relay's peak memory, and the cost of an outbox append inside
// a business transaction.
package bench

import (
	"github.com/eventline/eventline/examples/events"

	"bufio"
	"context"
	"fmt"
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

	"github.com/eventline/eventline/migrate"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
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
	prod   *producer.Producer
}

func newSetup(ctx context.Context, env Env, partitions int, writers int) (*setup, error) {
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
	s := &setup{pool: pool, schema: "bench_" + id, topic: "bench." + id}
	if _, err := migrate.Migrate(ctx, pool, migrate.Options{Schema: s.schema}); err != nil {
		pool.Close()
		return nil, err
	}
	s.pipe, err = pipeline.Parse(fmt.Appendf(nil, "topics: [{name: %q, partitions: %d, events: [eventline.orders.OrderCreated]}]", s.topic, partitions))
	if err != nil {
		pool.Close()
		return nil, err
	}
	reg, err := env.registry()
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.prod, err = producer.New(ctx, producer.Config{Pipeline: s.pipe, Registry: reg, Catalog: events.Catalog(), Events: []schemas.Event{&events.OrderCreated{}}, AutoRegister: true, Schema: s.schema})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// close drops the benchmark's schema.
func (s *setup) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = s.pool.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{s.schema}.Sanitize()+` CASCADE`)
	s.pool.Close()
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
