package shipping_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/connection"
	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"

	"example.com/shipping"
)

const (
	topic = "shipping.shipments"
	group = "shipping-tracking"
)

// The shipping team's whole path, from its own module, public packages
// only: CI registers the schemas, the service starts lookup-only, appends
// in its transactions, its relay publishes, its consumer group applies
// typed events exactly once, records another team's plain Kafka producer
// wrote (no eventline headers) included, across a full redelivery.
func TestShippingEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	brokers := strings.Split(stack["KAFKA_BROKERS"], ",")
	db := migratedDB(t, ctx)
	// The connection settings (TLS, SASL, registry auth) under the
	// names the CLI reads; the dev stack needs none, a production
	// deployment sets them.
	conn, err := connection.FromEnv(func(k string) string { return stack[k] })
	if err != nil {
		t.Fatal(err)
	}
	reg, err := conn.RegistryClient(stack["SCHEMA_REGISTRY_URL"])
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := shipping.Pipeline()
	if err != nil {
		t.Fatal(err)
	}

	// Production start: lookup-only. Before CI registered the schemas it
	// fails naming the command; after `eventline schemas register` it
	// finds exactly what CI registered.
	if _, err := shipping.NewProducer(ctx, db, reg, producer.ModePoll, false); !errors.Is(err, producer.ErrNotRegistered) {
		t.Fatalf("lookup-only before registration: %v, want ErrNotRegistered", err)
	}
	out := eventlineCLI(t, stack["SCHEMA_REGISTRY_URL"], "schemas", "register", "--config", "eventline.yaml")
	if !strings.Contains(out, "shipping.shipments-acme.shipping.ShipmentDispatched") {
		t.Fatalf("schemas register printed:\n%s", out)
	}
	prod, err := shipping.NewProducer(ctx, db, reg, producer.ModePoll, false)
	if err != nil {
		t.Fatalf("lookup-only after `eventline schemas register`: %v", err)
	}
	svc := &shipping.Service{DB: db, Producer: prod}

	// Before any relay runs, the first dispatch is in the outbox
	// (eventlinetest, the helpers a team's tests use).
	first, err := svc.Dispatch(ctx, "order-first", 3, shipping.CarrierDhl)
	if err != nil {
		t.Fatal(err)
	}
	firstEvent := eventlinetest.RequireAppended(ctx, t, db, shipping.Schema, eventlinetest.Match{
		EventType: "acme.shipping.ShipmentDispatched", AggregateID: first.String(), Topic: topic})[0]

	// The relay (creates the topic from eventline.yaml) and the group.
	rl, err := relay.New(relay.Config{DatabaseURL: stack["DATABASE_URL"], Brokers: brokers, KafkaOpts: conn.Kafka, Schema: shipping.Schema, Pipeline: pipe})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- rl.Run(relayCtx) }()
	defer func() {
		stopRelay()
		if err := <-relayDone; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	// The relay creates the topic from eventline.yaml; the group reads it.
	adm := kadm.NewClient(newClient(t, brokers))
	waitFor(t, ctx, "the relay to create "+topic, func() bool {
		td, err := adm.ListTopics(ctx, topic)
		return err == nil && td.Has(topic) && td[topic].Err == nil && len(td[topic].Partitions) == int(pipe.Topics[0].Partitions)
	})

	mux := shipping.Tracking()
	cfg := consumers.Config{Group: group, Topics: []string{topic}, Brokers: brokers, KafkaOpts: conn.Kafka, DB: db, Schema: shipping.Schema,
		Serde: schemas.NewSerde(reg), Mux: mux, Pipeline: pipe, CreateTopics: true}
	g, stopGroup := runGroup(t, ctx, cancel, cfg)

	dispatched := map[uuid.UUID]int32{first: 3}
	for i := range 49 {
		id, err := svc.Dispatch(ctx, fmt.Sprintf("order-%d", i), int32(i%4+1), shipping.CarrierPostnl)
		if err != nil {
			t.Fatal(err)
		}
		dispatched[id] = int32(i%4 + 1)
	}
	waitFor(t, ctx, "50 shipments in transit", func() bool {
		return count(t, db, `SELECT count(*) FROM shipping.tracking WHERE status = 'in_transit'`) == 50
	})
	// Typed payloads: each projection row holds its event's fields.
	for id, parcels := range dispatched {
		var got int32
		var carrier string
		if err := db.QueryRow(ctx, `SELECT parcels, carrier FROM shipping.tracking WHERE shipment_id = $1`, id).Scan(&got, &carrier); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "DHL", false: "POSTNL"}[id == first]; got != parcels || carrier != want {
			t.Fatalf("shipment %s: %d parcels by %s, want %d by %s", id, got, carrier, parcels, want)
		}
	}
	eventlinetest.RequireApplied(ctx, t, db, shipping.Schema, group, firstEvent.EventID)

	// The carrier integration: another team's producer, franz-go's kgo and
	// sr serde, its own Go type, no eventline headers.
	carrier := carrierProducer(t, ctx, reg, brokers)
	var delivered []*kgo.Record
	n := 0
	for id := range dispatched {
		if n++; n > 10 {
			break
		}
		delivered = append(delivered, carrier.record(t, id))
	}
	if err := carrier.cl.ProduceSync(ctx, delivered...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "10 deliveries applied", func() bool {
		return count(t, db, `SELECT count(*) FROM shipping.tracking WHERE status = 'delivered' AND signed_by = 'front desk'`) == 10
	})
	stopGroup()
	if n := count(t, db, `SELECT count(*) FROM shipping.tracking WHERE applications <> CASE status WHEN 'delivered' THEN 2 ELSE 1 END`); n != 0 {
		t.Fatalf("%d shipments applied more than once", n)
	}
	if st := g.Stats(); st.Applied != 60 || st.DeadLettered != 0 {
		t.Fatalf("stats %+v: want 60 applied, none dead-lettered", st)
	}

	// Redelivery of everything (committed offsets rewound to the start):
	// every record, eventline's and the carrier's, is a duplicate.
	var offs kadm.Offsets
	for p := range pipe.Topics[0].Partitions {
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	if err := adm.CommitAllOffsets(ctx, group, offs); err != nil {
		t.Fatal(err)
	}
	g2, stopGroup2 := runGroup(t, ctx, cancel, cfg)
	waitFor(t, ctx, "60 records seen again", func() bool { return g2.Stats().Duplicates == 60 })
	stopGroup2()
	if n := count(t, db, `SELECT count(*) FROM shipping.tracking WHERE applications <> CASE status WHEN 'delivered' THEN 2 ELSE 1 END`); n != 0 {
		t.Fatalf("after redelivery, %d shipments applied more than once", n)
	}
	if st := g2.Stats(); st.Applied != 0 || st.DeadLettered != 0 {
		t.Fatalf("redelivery stats %+v: want nothing applied or dead-lettered", st)
	}
	ends, err := adm.ListEndOffsets(ctx, consumers.DLTTopic(topic, group))
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset != 0 {
			t.Errorf("DLT partition %d: end offset %d (%v), want empty", o.Partition, o.Offset, o.Err)
		}
	})
}

// carrier is the other team's producer.
type carrier struct {
	cl    *kgo.Client
	serde *sr.Serde
}

// delivery is the carrier team's own Go type for the event.
type delivery struct {
	ShipmentID  string    `avro:"shipment_id"`
	DeliveredAt time.Time `avro:"delivered_at"`
	SignedBy    *string   `avro:"signed_by"`
}

func carrierProducer(t *testing.T, ctx context.Context, reg *sr.Client, brokers []string) *carrier {
	t.Helper()
	// The carrier's serializer uses the subject's latest version, as
	// Confluent's use.latest.version does.
	ss, err := reg.SchemaByVersion(ctx, topic+"-acme.shipping.ShipmentDelivered", -1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := avro.Parse(ss.Schema.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var serde sr.Serde
	serde.Register(ss.ID, delivery{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(w, v) }))
	return &carrier{cl: newClient(t, brokers), serde: &serde}
}

func newClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (c *carrier) record(t *testing.T, id uuid.UUID) *kgo.Record {
	t.Helper()
	signed := "front desk"
	v, err := c.serde.Encode(delivery{ShipmentID: id.String(), DeliveredAt: time.Now().UTC().Truncate(time.Millisecond), SignedBy: &signed})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(id.String()), Value: v}
}

// runGroup runs a group until the returned stop; a group that fails on
// its own ends the test (abort cancels the test's context).
func runGroup(t *testing.T, ctx context.Context, abort func(), cfg consumers.Config) (*consumers.Group, func()) {
	t.Helper()
	g, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		err := g.Run(gctx)
		if err != nil && gctx.Err() == nil {
			abort()
		}
		done <- err
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("group: %v", err)
		}
	}
	t.Cleanup(stop)
	return g, stop
}

// migratedDB connects to the stack's database, migrated for the service;
// closed when t ends.
func migratedDB(t *testing.T, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	db, err := pgxpool.New(ctx, stack["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := shipping.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

func count(t *testing.T, db *pgxpool.Pool, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond (a database or counter read) until it holds.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
