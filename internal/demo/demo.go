// Package demo runs the orders/inventory saga end to end: both example
// services with their HTTP APIs, outboxes, relays and consumer groups;
// it places orders over HTTP, injects poison records, waits until every
// order is settled and checks the saga's invariants.
package demo

import (
	"cmp"
	"github.com/eventline/eventline/internal/dsn"

	"github.com/eventline/eventline/examples/events"

	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/examples/inventory"
	"github.com/eventline/eventline/examples/orders"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/health"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// Config of a run.
type Config struct {
	Brokers     []string
	RegistryURL string
	DatabaseURL string
	// KafkaOpts (TLS, SASL) go to every Kafka client of the run, and
	// RegistryOpts (TLS, basic or bearer auth) to its registry client.
	KafkaOpts    []kgo.Opt
	RegistryOpts []sr.ClientOpt
	// Orders to place; Poison garbage records to inject into orders.events.
	Orders, Poison int
	// Rate places orders at this many per second (open loop); 0 places
	// them as fast as 8 concurrent clients can, which saturates the
	// machine and measures queueing as much as the pipeline.
	Rate int
	// Products in stock; stock is sized so that about a fifth of the
	// orders cannot be served and are cancelled.
	Products int
	// FaultShare of OrderCreated events fail their first attempt (to show
	// the retry chain). Default 0.02.
	FaultShare float64
	// RetryDelays of both consumer groups. Default 500ms, 2s, 5s.
	RetryDelays []time.Duration
	// Protocol and InstanceID of both consumer groups' members (see
	// consumers.Config). Default: consumers.DefaultProtocol, dynamic.
	Protocol   consumers.Protocol
	InstanceID string
	// Prefix is put before every topic and group name (tests sharing one
	// broker use it). Default none.
	Prefix string
	// Timeout for every order to settle. Default 5 minutes.
	Timeout time.Duration
	// TracerProvider traces the run (HTTP, outbox appends, relays'
	// publishes, consumers' receives and processes). Default none.
	TracerProvider trace.TracerProvider
	// MeterProvider receives the relays' and consumer groups' metrics,
	// Health their readiness checks. Default none.
	MeterProvider metric.MeterProvider
	Health        *health.Probes
	// Progress receives a one-line status twice a second (nil: none).
	Progress io.Writer
	Logger   *slog.Logger
}

// Result is the summary of a run.
type Result struct {
	RunID         string  `json:"run_id"`
	Orders        int     `json:"orders"`
	Confirmed     int     `json:"confirmed"`
	Cancelled     int     `json:"cancelled"`
	Declined      int     `json:"payment_declined"`
	Pending       int     `json:"pending"`
	Retried       int64   `json:"retried"`
	DeadLettered  int64   `json:"dlt_records"`
	Duplicates    int64   `json:"duplicates_skipped"`
	DoubleApplied int64   `json:"duplicate_applications"`
	Elapsed       float64 `json:"elapsed_s"`
	OrdersPerSec  float64 `json:"orders_per_sec"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	// The two halves of order → terminal: the order's commit to the
	// inventory service's reservation (orders outbox → relay → Kafka →
	// inventory group), and that to the order's terminal update (inventory
	// outbox → relay → Kafka → orders group), p50 and p99 in ms.
	Hops         map[string][2]float64 `json:"hops_ms"`
	Invariants   map[string]bool       `json:"invariants"`
	InvariantsOK bool                  `json:"invariants_ok"`
	Details      map[string]int64      `json:"details"`
}

func (c Config) withDefaults() Config {
	c.Orders = cmp.Or(c.Orders, 1000)
	c.Products = cmp.Or(c.Products, 20)
	c.FaultShare = cmp.Or(c.FaultShare, 0.02)
	if c.RetryDelays == nil {
		c.RetryDelays = []time.Duration{500 * time.Millisecond, 2 * time.Second, 5 * time.Second}
	}
	c.Timeout = cmp.Or(c.Timeout, 5*time.Minute)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	return c
}

// demoRun is the header poison records carry, so a run counts its own.
const demoRun = "eventline-demo-run"

// Run runs the saga once. The demo owns the PostgreSQL schemas "orders"
// and "inventory": they are dropped and created afresh.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Orders < 1 || cfg.Poison < 0 {
		return nil, errors.New("demo: orders must be at least 1 and poison not negative")
	}
	log := cfg.Logger
	runID := uuid.NewString()[:8]
	pipe := events.Pipeline()
	if cfg.Prefix != "" {
		for i := range pipe.Topics {
			pipe.Topics[i].Name = cfg.Prefix + pipe.Topics[i].Name
		}
	}
	ordersTopic, inventoryTopic := cfg.Prefix+"orders.events", cfg.Prefix+"inventory.events"
	db, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("demo: bad database URL %s: %w", dsn.Redact(cfg.DatabaseURL), err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `DROP SCHEMA IF EXISTS orders CASCADE; DROP SCHEMA IF EXISTS inventory CASCADE`); err != nil {
		return nil, fmt.Errorf("demo: error connecting to postgres at %s (resetting the demo schemas): %w", dsn.Redact(cfg.DatabaseURL), err)
	}
	if err := orders.Migrate(ctx, db); err != nil {
		return nil, fmt.Errorf("demo: orders schema: %w", err)
	}
	if err := inventory.Migrate(ctx, db); err != nil {
		return nil, fmt.Errorf("demo: inventory schema: %w", err)
	}
	reg, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.RegistryURL)}, cfg.RegistryOpts...)...)
	if err != nil {
		return nil, err
	}
	serde := schemas.NewSerde(reg)
	ordersProd, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: reg, Catalog: events.Catalog(), AutoRegister: true, Schema: orders.Schema, TracerProvider: cfg.TracerProvider,
		Events: []schemas.Event{&events.OrderCreated{}, &events.OrderConfirmed{}, &events.OrderCancelled{}}})
	if err != nil {
		return nil, fmt.Errorf("demo: orders producer: %w", err)
	}
	invProd, err := producer.New(ctx, producer.Config{DB: db, Pipeline: pipe, Registry: reg, Catalog: events.Catalog(), AutoRegister: true, Schema: inventory.Schema, TracerProvider: cfg.TracerProvider,
		Events: []schemas.Event{&events.InventoryReserved{}, &events.InventoryReleased{}, &events.InventoryConfirmed{}, &events.StockDepleted{}, &events.StockReplenished{}}})
	if err != nil {
		return nil, fmt.Errorf("demo: inventory producer: %w", err)
	}
	// About one order in twenty has its payment declined after the stock
	// is reserved: the inventory must release that reservation.
	ordSvc := &orders.Service{DB: db, Producer: ordersProd, DeclinePayment: func(orderID string) bool {
		id, err := uuid.Parse(orderID)
		return err == nil && id.ID()%20 == 7
	}}
	faultEvery := uint32(1 / cfg.FaultShare)
	invSvc := &inventory.Service{DB: db, Producer: invProd, Fault: func(ev *consumers.Event) error {
		if _, ok := ev.Payload.(*events.OrderCreated); ok && ev.Attempt == 0 && faultEvery > 0 && ev.ID.ID()%faultEvery == 0 {
			return errors.New("simulated transient fault (first attempt)")
		}
		return nil
	}}

	runCtx, stopAll := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr atomic.Pointer[error]
	fail := func(err error) {
		if err != nil && runCtx.Err() == nil {
			runErr.CompareAndSwap(nil, &err)
			stopAll()
		}
	}
	defer func() { stopAll(); wg.Wait() }()

	// Relays: one per service outbox.
	for _, schema := range []string{orders.Schema, inventory.Schema} {
		r, err := relay.New(relay.Config{DatabaseURL: cfg.DatabaseURL, Brokers: cfg.Brokers, Schema: schema, Pipeline: pipe, KafkaOpts: cfg.KafkaOpts, Logger: log.With("relay", schema), TracerProvider: cfg.TracerProvider})
		if err != nil {
			return nil, err
		}
		if cfg.MeterProvider != nil {
			if err := r.RegisterMetrics(cfg.MeterProvider); err != nil {
				return nil, err
			}
		}
		if cfg.Health != nil {
			cfg.Health.Add("relay "+schema, r)
		}
		wg.Go(func() { defer r.Close(); fail(r.Run(runCtx)) })
	}
	// Consumer groups, started once the relays have created the topics.
	if err := waitTopics(runCtx, cfg.Brokers, cfg.KafkaOpts, pipe.Topics); err != nil {
		return nil, runFailure(&runErr, ctx, err) // a relay's failure, if that is what stopped the wait
	}
	ready := make(chan string, 2)
	group := func(name, topic, schema string, h consumers.HandlerFunc) (*consumers.Group, error) {
		var once sync.Once
		return consumers.New(consumers.Config{Group: name, Topics: []string{topic}, Brokers: cfg.Brokers, DB: db, Schema: schema,
			Serde: serde, Handler: h, Events: events.All(), RetryDelays: cfg.RetryDelays, Protocol: cfg.Protocol, InstanceID: cfg.InstanceID, KeyOrder: true, CreateTopics: true, MaxPollRecords: 1000, KafkaOpts: cfg.KafkaOpts,
			Logger: log.With("consumer", name), TracerProvider: cfg.TracerProvider, OnAssigned: func(map[string][]int32) { once.Do(func() { ready <- name }) }})
	}
	invGroupName, ordGroupName := cfg.Prefix+inventory.Group, cfg.Prefix+orders.Group
	invGroup, err := group(invGroupName, ordersTopic, inventory.Schema, invSvc.Handle)
	if err != nil {
		return nil, err
	}
	ordGroup, err := group(ordGroupName, inventoryTopic, orders.Schema, ordSvc.Handle)
	if err != nil {
		return nil, err
	}
	for _, g := range []*consumers.Group{invGroup, ordGroup} {
		if cfg.MeterProvider != nil {
			if err := g.RegisterMetrics(cfg.MeterProvider); err != nil {
				return nil, err
			}
		}
		wg.Go(func() { fail(g.Run(runCtx)) })
	}
	if cfg.Health != nil {
		cfg.Health.Add("consumers "+invGroupName, invGroup)
		cfg.Health.Add("consumers "+ordGroupName, ordGroup)
	}
	for range 2 {
		select {
		case <-ready:
		case <-runCtx.Done():
			return nil, runFailure(&runErr, ctx)
		case <-time.After(60 * time.Second):
			return nil, errors.New("demo: the consumer groups did not get partitions within 60s")
		}
	}

	// The services' HTTP APIs on loopback.
	ordURL, err := serve(runCtx, &wg, traced(cfg.TracerProvider, "orders", ordSvc.HTTP()))
	if err != nil {
		return nil, err
	}
	invURL, err := serve(runCtx, &wg, traced(cfg.TracerProvider, "inventory", invSvc.HTTP()))
	if err != nil {
		return nil, err
	}

	// Stock for about four fifths of the demand (an order asks 1-2 lines
	// of 1-3 units: 3 units on average).
	products := make([]string, cfg.Products)
	perProduct := max(1, int(float64(cfg.Orders)*3*0.8)/cfg.Products)
	for i := range products {
		// Product ids are UUIDs in the schemas: derived from a SKU name.
		products[i] = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "eventline-demo-sku-%03d", i+1)).String()
		if err := postJSON(runCtx, invURL+"/stock", map[string]any{"product_id": products[i], "quantity": perProduct}, nil); err != nil {
			return nil, fmt.Errorf("demo: adding stock: %w", err)
		}
	}

	customers := make([]string, 500)
	for i := range customers {
		customers[i] = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "eventline-demo-customer-%d", i)).String()
	}
	start := time.Now()
	var placed atomic.Int64
	stopProgress := progress(cfg, db, &placed, invGroup, ordGroup)
	defer stopProgress()
	// Poison: garbage bytes that no decoder accepts, in the middle of the
	// orders.
	var poisonErr error
	var placeWG sync.WaitGroup
	placeWG.Go(func() { poisonErr = injectPoison(runCtx, cfg.Brokers, cfg.KafkaOpts, ordersTopic, cfg.Poison, runID) })
	jobs := make(chan int)
	var placeErr atomic.Pointer[error]
	for range 8 {
		placeWG.Go(func() {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for range jobs {
				lines := []orders.Line{}
				for _, p := range pick(rng, products, 1+rng.IntN(2)) {
					lines = append(lines, orders.Line{ProductID: p, Quantity: int32(1 + rng.IntN(3)), UnitPriceMinor: int64(500 + rng.IntN(5000))})
				}
				err := postJSON(runCtx, ordURL+"/orders", orders.CreateRequest{CustomerID: customers[rng.IntN(len(customers))], Lines: lines}, nil)
				if err != nil {
					placeErr.CompareAndSwap(nil, &err)
					continue
				}
				placed.Add(1)
			}
		})
	}
	begin := time.Now()
	for i := 0; i < cfg.Orders && runCtx.Err() == nil; i++ {
		if cfg.Rate > 0 {
			if d := time.Until(begin.Add(time.Duration(i) * time.Second / time.Duration(cfg.Rate))); d > 0 {
				time.Sleep(d) // pacing the load, not synchronising
			}
		}
		jobs <- i
	}
	close(jobs)
	placeWG.Wait()
	if p := placeErr.Load(); p != nil {
		return nil, fmt.Errorf("demo: placing orders: %w", *p)
	}
	if poisonErr != nil {
		return nil, fmt.Errorf("demo: injecting poison: %w", poisonErr)
	}

	// Wait until every order is terminal and every poison record is in
	// the DLT.
	deadline := time.Now().Add(cfg.Timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var pending int64
		if err := db.QueryRow(runCtx, `SELECT count(*) FROM orders.orders WHERE status = 'pending'`).Scan(&pending); err != nil {
			return nil, runFailure(&runErr, ctx, err)
		}
		if pending == 0 && invGroup.Stats().DeadLettered >= int64(cfg.Poison) && settled(runCtx, db) {
			break
		}
		if time.Now().After(deadline) {
			log.Error("demo: timed out waiting for the saga to settle", "pending_orders", pending)
			break
		}
		select {
		case <-runCtx.Done():
			return nil, runFailure(&runErr, ctx)
		case <-tick.C:
		}
	}
	elapsed := time.Since(start)
	stopProgress()
	res, err := check(runCtx, db, cfg, runID)
	if err != nil {
		return nil, err
	}
	is, os2 := invGroup.Stats(), ordGroup.Stats()
	res.Retried = is.Retried + os2.Retried
	res.DeadLettered = is.DeadLettered + os2.DeadLettered
	res.Duplicates = is.Duplicates + os2.Duplicates
	res.Elapsed = elapsed.Seconds()
	res.OrdersPerSec = float64(res.Orders) / elapsed.Seconds()
	res.Invariants["dlt_has_poison_records"] = is.DeadLettered == int64(cfg.Poison) && os2.DeadLettered == 0
	res.InvariantsOK = true
	for _, ok := range res.Invariants {
		res.InvariantsOK = res.InvariantsOK && ok
	}
	return res, nil
}

// settled: no reservation of a terminal order is still open, i.e. the
// saga's last step (inventory confirming or releasing) has happened.
func settled(ctx context.Context, db *pgxpool.Pool) bool {
	var open int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM inventory.reservations r JOIN orders.orders o ON o.id = r.order_id WHERE r.status = 'reserved'`).Scan(&open)
	return err == nil && open == 0
}

func runFailure(p *atomic.Pointer[error], ctx context.Context, errs ...error) error {
	if e := p.Load(); e != nil {
		return fmt.Errorf("demo: %w", *e)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// check computes the summary and the invariants from the databases.
func check(ctx context.Context, db *pgxpool.Pool, cfg Config, runID string) (*Result, error) {
	res := &Result{RunID: runID, Invariants: map[string]bool{}, Details: map[string]int64{}}
	var confirmed, cancelled, pending, declined int64
	var p50, p99 *float64
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'confirmed'), count(*) FILTER (WHERE status = 'cancelled'),
		count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE reason = 'PAYMENT_FAILED'),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM terminal_at - created_at) * 1000),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM terminal_at - created_at) * 1000)
		FROM orders.orders`).Scan(&confirmed, &cancelled, &pending, &declined, &p50, &p99); err != nil {
		return nil, err
	}
	res.Orders, res.Confirmed, res.Cancelled, res.Pending, res.Declined = int(confirmed+cancelled+pending), int(confirmed), int(cancelled), int(pending), int(declined)
	if p50 != nil {
		res.P50ms, res.P99ms = *p50, *p99
	}
	res.Hops = map[string][2]float64{}
	for name, expr := range map[string]string{
		"order_to_reservation":    `r.created_at - o.created_at`,
		"reservation_to_terminal": `o.terminal_at - r.created_at`,
	} {
		var h50, h99 *float64
		if err := db.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM `+expr+`) * 1000),
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM `+expr+`) * 1000)
			FROM orders.orders o JOIN inventory.reservations r ON r.order_id = o.id WHERE o.terminal_at IS NOT NULL`).Scan(&h50, &h99); err != nil {
			return nil, err
		}
		if h50 != nil {
			res.Hops[name] = [2]float64{*h50, *h99}
		}
	}
	q := func(name, sql string) int64 {
		var n int64
		if err := db.QueryRow(ctx, sql).Scan(&n); err != nil {
			res.Details[name+"_error"] = 1
			return -1
		}
		res.Details[name] = n
		return n
	}
	reserved := q("reservations_reserved_ever", `SELECT count(*) FROM inventory.reservations WHERE status IN ('reserved', 'confirmed', 'released')`)
	resConfirmed := q("reservations_confirmed", `SELECT count(*) FROM inventory.reservations WHERE status = 'confirmed'`)
	resReleased := q("reservations_released", `SELECT count(*) FROM inventory.reservations WHERE status = 'released'`)
	rejected := q("reservations_rejected", `SELECT count(*) FROM inventory.reservations WHERE status = 'rejected'`)
	negative := q("negative_stock_rows", `SELECT count(*) FROM inventory.stock WHERE available < 0 OR reserved < 0 OR sold < 0`)
	leak := q("stock_units_unaccounted", `SELECT coalesce(sum(added - available - reserved - sold), 0) FROM inventory.stock`)
	soldVsOrders := q("sold_units_minus_confirmed_order_units", `SELECT (SELECT coalesce(sum(sold), 0) FROM inventory.stock) -
		(SELECT coalesce(sum((l->>'quantity')::int), 0) FROM orders.orders o, jsonb_array_elements(o.lines) l WHERE o.status = 'confirmed')`)
	doubles := q("duplicate_applications", `SELECT (SELECT count(*) FROM orders.applications WHERE n > 1) + (SELECT count(*) FROM inventory.applications WHERE n > 1)`)
	res.DoubleApplied = doubles

	res.Invariants["every_order_terminal"] = pending == 0 && res.Orders == cfg.Orders
	res.Invariants["stock_never_negative"] = negative == 0 && leak == 0
	res.Invariants["reserved_eq_confirmed_plus_released"] = reserved == resConfirmed+resReleased && reserved >= 0
	res.Invariants["orders_match_reservations"] = confirmed == resConfirmed && cancelled == rejected+resReleased && soldVsOrders == 0
	res.Invariants["no_event_applied_twice"] = doubles == 0
	return res, nil
}

// progress prints a one-line status until stopped.
func progress(cfg Config, db *pgxpool.Pool, placed *atomic.Int64, inv, ord *consumers.Group) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			var confirmed, cancelled int64
			_ = db.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'confirmed'), count(*) FILTER (WHERE status = 'cancelled') FROM orders.orders`).Scan(&confirmed, &cancelled)
			is, os2 := inv.Stats(), ord.Stats()
			fmt.Fprintf(cfg.Progress, "\rplaced %d/%d · confirmed %d · cancelled %d · retried %d · dead-lettered %d   ",
				placed.Load(), cfg.Orders, confirmed, cancelled, is.Retried+os2.Retried, is.DeadLettered+os2.DeadLettered)
			select {
			case <-done:
				fmt.Fprintln(cfg.Progress)
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func pick(rng *rand.Rand, from []string, n int) []string {
	idx := rng.Perm(len(from))[:min(n, len(from))]
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = from[j]
	}
	slices.Sort(out)
	return out
}

// traced wraps an API in otelhttp server spans ("POST /orders", ...).
func traced(tp trace.TracerProvider, service string, h http.Handler) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, service, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{}),
		// Named by the first path segment: ids stay out of span names.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
			return r.Method + " /" + first
		}))
}

func serve(ctx context.Context, wg *sync.WaitGroup, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	wg.Go(func() { _ = srv.Serve(ln) })
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return "http://" + ln.Addr().String(), nil
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

func postJSON(ctx context.Context, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// injectPoison writes n records no decoder accepts to orders.events, with
// an event id so only the bytes are wrong.
func injectPoison(ctx context.Context, brokers []string, opts []kgo.Opt, topic string, n int, runID string) error {
	if n == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("poison-%d", i)), Value: []byte("\x00\xff\xff\xff\xffnot an avro body"),
			Headers: []kgo.RecordHeader{{Key: headers.EventID, Value: []byte(uuid.NewString())}, {Key: demoRun, Value: []byte(runID)}}}
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// waitTopics waits until the relays have created the pipeline's topics.
func waitTopics(ctx context.Context, brokers []string, opts []kgo.Opt, topics []pipeline.Topic) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		td, err := kadm.NewClient(cl).ListTopics(ctx, names...)
		if err == nil {
			ok := 0
			for _, t := range td {
				if t.Err == nil && len(t.Partitions) > 0 {
					ok++
				}
			}
			if ok == len(names) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: topics %v not created within 60s (is the relay running? %v)", names, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
