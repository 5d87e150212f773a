package consumers_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

var refundSchema = avro.MustParse(`{"type": "record", "name": "RefundIssued", "namespace": "acme.payments",
  "fields": [{"name": "refund_id", "type": "string"}]}`)

// refund stands for a type avrogen generated in the user's module.
type refund struct {
	RefundID string `avro:"refund_id"`
}

func (*refund) Schema() avro.Schema { return refundSchema }

// A Mux holds typed handlers, one per event type, and is the group's
// handler: Config.Mux also gives the types payloads decode into.
func ExampleHandle() {
	var (
		brokers []string
		pool    *pgxpool.Pool
		serde   *schemas.Serde
	)
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, r *refund) error {
		_, err := tx.Exec(ctx, `UPDATE ledger SET refunded = true WHERE refund_id = $1`, r.RefundID)
		return err
	})
	// Other teams' types on the topic are skipped (and counted); to send
	// them to the dead-letter topic instead:
	mux.Unhandled(func(_ context.Context, _ pgx.Tx, ev *consumers.Event) error {
		return consumers.Permanent(fmt.Errorf("no handler for %s", ev.Type))
	})
	g, err := consumers.New(consumers.Config{Group: "ledger", Topics: []string{"payments.events"}, Brokers: brokers,
		DB: pool, Serde: serde, Mux: mux})
	if err != nil {
		panic(err)
	}
	_ = g.Run(context.Background())
}

// A Mux is the whole handler setting: with Handler, BatchHandler or
// Events beside it (the half-wired configurations of old), or without a
// handler registered, New refuses the Config and says why.
func TestConfigRefusesHalfWiredMux(t *testing.T) {
	t.Parallel()
	mux := consumers.NewMux()
	consumers.Handle(mux, func(context.Context, pgx.Tx, *consumers.Event, *refund) error { return nil })
	handler := func(context.Context, pgx.Tx, *consumers.Event) error { return nil }
	batch := func(context.Context, pgx.Tx, []*consumers.Event) error { return nil }
	base := consumers.Config{Group: "g", Topics: []string{"t"}, Brokers: []string{"localhost:9092"}, DB: &pgxpool.Pool{}, Serde: schemas.NewSerde(nil)}
	for _, tc := range []struct {
		name string
		set  func(*consumers.Config)
		want []string
	}{
		{"mux and events", func(c *consumers.Config) { c.Mux, c.Events = mux, []schemas.Event{&refund{}} }, []string{"Mux is set together with Events", "set Mux alone"}},
		{"mux and handler", func(c *consumers.Config) { c.Mux, c.Handler = mux, handler }, []string{"Mux is set together with Handler", "a Mux is the group's handler"}},
		{"mux and batch handler", func(c *consumers.Config) { c.Mux, c.BatchHandler = mux, batch }, []string{"Mux is set together with BatchHandler"}},
		{"empty mux", func(c *consumers.Config) { c.Mux = consumers.NewMux() }, []string{"Mux has no handler", "Handle"}},
		{"no handler", func(*consumers.Config) {}, []string{"a Mux, Handler or BatchHandler is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.set(&cfg)
			_, err := consumers.New(cfg)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	for _, ok := range []consumers.Config{{Mux: mux}, {Handler: handler, Events: []schemas.Event{&refund{}}}, {BatchHandler: batch}, {Handler: handler, BatchHandler: batch}} {
		cfg := base
		cfg.Mux, cfg.Handler, cfg.BatchHandler, cfg.Events = ok.Mux, ok.Handler, ok.BatchHandler, ok.Events
		if _, err := consumers.New(cfg); err != nil {
			t.Errorf("New refused a well-wired config: %v", err)
		}
	}
}

// On a topic shared with another team, events of a type the Mux has no
// handler for are skipped: no dedupe row, no retry, no DLT, but counted
// per type (Stats, the eventline_consumer_skipped metric) and logged the
// first time. A second group whose Mux sets Unhandled dead-letters them.
func TestMuxSkipsUnhandledTypes(t *testing.T) {
	e := newGroupEnv(t, 1)
	refundID := e.fx.Register(t, e.topic+"-acme.payments.RefundIssued", refundSchema.String())
	var recs []*kgo.Record
	for i := range 5 {
		r, _ := e.event(t, fmt.Sprintf("ticket-%d", i))
		recs = append(recs, r)
		if i < 3 { // another team's events, between ours
			v, err := schemas.Encode(refundID, refundSchema, &refund{RefundID: fmt.Sprintf("r-%d", i)})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: e.topic, Key: fmt.Appendf(nil, "r-%d", i), Value: v, Headers: []kgo.RecordHeader{
				{Key: headers.EventID, Value: []byte(uuid.NewString())},
				{Key: headers.EventType, Value: []byte("acme.payments.RefundIssued")}}})
		}
	}
	e.produce(t, recs...)

	tickets := func(group string) *consumers.Mux {
		mux := consumers.NewMux()
		consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, o *testevents.TicketOpened) error {
			return recordingHandler(group, nil)(ctx, tx, ev)
		})
		return mux
	}
	var logs testkit.SyncBuffer
	skipping := testkit.UniqueName(t, "skip")
	g, _ := e.run(t, consumers.Config{Group: skipping, RetryDelays: fastDelays, Mux: tickets(skipping),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	reader := sdkmetric.NewManualReader()
	if err := g.RegisterMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	waitStats(t, g, "5 applied, 3 skipped", func(st consumers.Stats) bool { return st.Applied == 5 && st.Skipped == 3 })
	if st := g.Stats(); st.SkippedByType["acme.payments.RefundIssued"] != 3 || len(st.SkippedByType) != 1 || st.DeadLettered != 0 || st.Retried != 0 {
		t.Errorf("stats %+v: want 3 RefundIssued skipped, nothing retried or dead-lettered", st)
	}
	if n := e.count(t, `SELECT count(*) FROM eventline_consumer_dedupe WHERE group_id = $1`, skipping); n != 5 {
		t.Errorf("%d dedupe rows, want 5: a skipped event writes none", n)
	}
	if got := skippedMetric(t, reader, skipping); got["acme.payments.RefundIssued"] != 3 || len(got) != 1 {
		t.Errorf("eventline_consumer_skipped: %v", got)
	}
	infos := 0
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "skipping events of a type the Mux has no handler for") {
			continue
		}
		if !strings.Contains(line, "event_type=acme.payments.RefundIssued") {
			t.Errorf("skip log line without its type: %s", line)
		}
		if strings.Contains(line, "level=INFO") {
			infos++
		}
	}
	if infos != 1 {
		t.Errorf("%d Info lines about the skipped type, want the first occurrence only:\n%s", infos, logs.String())
	}

	strict := testkit.UniqueName(t, "strict")
	mux := tickets(strict)
	mux.Unhandled(func(_ context.Context, _ pgx.Tx, ev *consumers.Event) error {
		return consumers.Permanent(fmt.Errorf("no handler for %s", ev.Type))
	})
	g2, _ := e.run(t, consumers.Config{Group: strict, RetryDelays: fastDelays, Mux: mux})
	waitStats(t, g2, "5 applied, 3 dead-lettered", func(st consumers.Stats) bool { return st.Applied == 5 && st.DeadLettered == 3 })
	for _, r := range readAll(t, e.brokers, consumers.DLTTopic(e.topic, strict), 3) {
		if h := headerMap(r); h[headers.EventType] != "acme.payments.RefundIssued" || h[headers.ErrorClass] != consumers.ClassPermanent ||
			!strings.Contains(h[headers.ErrorMessage], "no handler for acme.payments.RefundIssued") {
			t.Errorf("DLT record: %v", h)
		}
	}
	if st := g2.Stats(); st.Skipped != 0 || st.Retried != 0 {
		t.Errorf("Unhandled group stats %+v: want nothing skipped or retried", st)
	}
}

// skippedMetric reads eventline_consumer_skipped of group, by event type.
func skippedMetric(t *testing.T, reader *sdkmetric.ManualReader, group string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "eventline_consumer_skipped" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				typ, _ := dp.Attributes.Value(attribute.Key("event_type"))
				if g, _ := dp.Attributes.Value(attribute.Key("group")); g.AsString() == group {
					got[typ.AsString()] = dp.Value
				}
			}
		}
	}
	return got
}
