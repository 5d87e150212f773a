package interop_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

// A topic the relay writes in CloudEvents binary mode is read by a
// consumer that knows only the CloudEvents Kafka binding: the CloudEvents
// Python SDK (from_binary, which validates the required attributes) over
// confluent_kafka's consumer, with Confluent's AvroDeserializer for the
// data. Every required attribute and the optional ones the relay writes
// come through, the key as the partitionkey extension, and the data
// decodes to the event the producer appended.
func TestCloudEventsPythonSDK(t *testing.T) {
	f := testkit.Setup(t)
	topic := testkit.UniqueName(t, "tickets.ce")
	pipeYAML := fmt.Sprintf("topics: [{name: %s, partitions: 2, replication_factor: 1, events: [helpdesk.tickets.TicketOpened], cloudevents: {mode: binary}}]", topic)
	prod := f.Producer(t, []byte(pipeYAML), testevents.Catalog(), &testevents.TicketOpened{})
	pipe, err := pipeline.Parse([]byte(pipeYAML))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	want := map[string]uuid.UUID{} // aggregate id -> event id
	for range 3 {
		ticket := sampleTicket()
		ticket.TicketID = uuid.NewString()
		id := uuid.New()
		tx, err := f.DB.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := prod.Append(ctx, tx, producer.Message{EventID: id, AggregateType: "ticket", AggregateID: ticket.TicketID, Event: ticket}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		want[ticket.TicketID] = id
	}
	brokers := testkit.Kafka(t) // kfake: a new cluster each call
	r, err := relay.New(relay.Config{DatabaseURL: f.DatabaseURL, Brokers: brokers, Pipeline: pipe, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
		r.Close()
	})
	testkit.WaitFor(t, 60*time.Second, "the relay published the events", func() bool { return r.Stats().Published == uint64(len(want)) })
	after := time.Now().Add(time.Second)

	var out struct {
		Events []struct {
			Attributes map[string]*string
			Record     map[string]any
		}
	}
	confluent(t, map[string]any{"mode": "cloudevents", "registry": f.RegistryURL, "brokers": strings.Join(brokers, ","),
		"topic": topic, "partitions": 2, "count": len(want)}, &out)
	if len(out.Events) != len(want) {
		t.Fatalf("the SDK read %d events, want %d", len(out.Events), len(want))
	}
	for _, ev := range out.Events {
		a := func(k string) string {
			if v := ev.Attributes[k]; v != nil {
				return *v
			}
			return ""
		}
		agg := a("subject")
		id, ok := want[agg]
		if !ok {
			t.Errorf("subject %q is no appended aggregate (attributes %v)", agg, ev.Attributes)
			continue
		}
		delete(want, agg)
		for k, v := range map[string]string{
			"specversion": "1.0", "id": id.String(), "source": "urn:eventline:topic:" + topic,
			"type": "helpdesk.tickets.TicketOpened", "datacontenttype": "application/avro", "partitionkey": agg,
		} {
			if a(k) != v {
				t.Errorf("attribute %s = %q, want %q", k, a(k), v)
			}
		}
		ts, err := time.Parse(time.RFC3339Nano, a("time"))
		if err != nil || ts.Before(before) || ts.After(after) {
			t.Errorf("time %q (%v): want between %s and %s", a("time"), err, before, after)
		}
		for k := range ev.Attributes {
			if strings.HasPrefix(k, "eventline") {
				t.Errorf("the SDK took eventline's header %s for an attribute", k)
			}
		}
		if ev.Record["ticket_id"] != agg || ev.Record["channel"] != "MAIL" || ev.Record["estimate_minutes"] != float64(3998) {
			t.Errorf("data decoded to %v", ev.Record)
		}
	}
}
