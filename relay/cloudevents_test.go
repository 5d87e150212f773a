package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

// A topic in CloudEvents binary mode gets, in both relay modes, the
// binding's attributes beside eventline's headers: ce_id is the event id,
// ce_type the Avro full name, ce_subject the aggregate id (also the key),
// ce_time when the event was written, content-type application/avro, and
// the value stays Confluent-framed. A producer's own extension attribute
// passes; a stored ce_id (a second, forged id) is parked.
func TestRelayCloudEventsBinary(t *testing.T) {
	t.Parallel()
	for _, mode := range []relay.Mode{relay.ModePoll, relay.ModeLogical} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			var b *bundle
			if mode == relay.ModeLogical {
				b = setupLogical(t)
			} else {
				b = setup(t)
			}
			const source = "https://tickets.example.com/helpdesk"
			b.ce = &pipeline.CloudEvents{Mode: pipeline.CloudEventsBinary, Source: source}
			ctx := context.Background()
			before := time.Now().Add(-time.Second) // the database's clock may differ a little
			aggs := []string{uuid.NewString(), uuid.NewString()}
			for _, agg := range aggs {
				tx, err := b.db.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: 1, Event: opened(agg),
					Headers: map[string]string{"ce_tenant": "acme"}}); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			forged := uuid.NewString()
			tx, err := b.db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: forged, Event: opened(forged),
				Headers: map[string]string{"ce_id": "forged"}}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			r, stop := b.start(relay.Config{Mode: mode})
			recs := b.consume(len(aggs))
			waitFor(t, func() bool { return r.Stats().Parked == 1 })
			stop()
			after := time.Now().Add(time.Second)
			if len(recs) != len(aggs) {
				t.Fatalf("%d records, want %d (the forged one parked)", len(recs), len(aggs))
			}
			for _, rec := range recs {
				want := map[string]string{
					headers.CESpecVersion: "1.0",
					headers.CEID:          header(rec, headers.EventID),
					headers.CESource:      source,
					headers.CEType:        "helpdesk.tickets.TicketOpened",
					headers.CESubject:     string(rec.Key),
					headers.ContentType:   "application/avro",
					"ce_tenant":           "acme",
				}
				for k, v := range want {
					if got := header(rec, k); got != v || got == "" {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				if _, err := uuid.Parse(header(rec, headers.CEID)); err != nil {
					t.Errorf("ce_id %q is not the event's UUID", header(rec, headers.CEID))
				}
				if header(rec, headers.AggregateID) != string(rec.Key) || header(rec, headers.EventType) == "" {
					t.Errorf("eventline headers missing beside the CloudEvents ones: %v", rec.Headers)
				}
				ts, err := time.Parse(time.RFC3339Nano, header(rec, headers.CETime))
				if err != nil || ts.Before(before) || ts.After(after) || !strings.HasSuffix(header(rec, headers.CETime), "Z") {
					t.Errorf("ce_time %q (%v): want RFC 3339 UTC between %s and %s", header(rec, headers.CETime), err, before, after)
				}
				if _, _, err := schemas.SplitHeader(rec.Value); err != nil {
					t.Errorf("value is not Confluent-framed: %v", err)
				}
				n := 0
				for _, h := range rec.Headers {
					if h.Key == headers.CEID {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d ce_id headers", n)
				}
			}
			parked, err := relay.ListParked(ctx, b.db, "")
			if err != nil || len(parked) != 1 || !strings.Contains(parked[0].Error, `header "ce_id" is written by the relay`) {
				t.Fatalf("parked: %+v, %v", parked, err)
			}
		})
	}
}
