package interop_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

const (
	attachment = "helpdesk.shared.Attachment"
	opened     = "helpdesk.tickets.TicketOpened"
	worked     = "helpdesk.worklog.WorkLogged"
)

func text(t *testing.T, name string) string {
	t.Helper()
	info, ok := testevents.Catalog().Lookup(name)
	if !ok {
		t.Fatalf("%s missing from the catalogue", name)
	}
	return info.Text
}

func openedRecord(i int) map[string]any {
	return map[string]any{
		"ticket_id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "requester_id": "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e",
		"attachments":      []map[string]any{{"blob_id": "a4d3c2b1-0f9e-4d8c-b7a6-958473625140", "pages": i, "size_bytes": 1000 + i}},
		"estimate_minutes": i, "channel": "MAIL", "opened_at": int64(1_790_000_000_000 + i),
	}
}

func workedRecord(i int) map[string]any {
	return map[string]any{
		"entry_id": fmt.Sprintf("00000000-0000-4000-9000-%012d", i), "ticket_id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		"minutes": 10 + i, "billable": i%2 == 0,
		"evidence":  []map[string]any{{"blob_id": "b4d3c2b1-0f9e-4d8c-b7a6-958473625140", "pages": 1, "size_bytes": 7 * i}},
		"logged_at": int64(1_790_000_100_000 + i),
	}
}

// Confluent's Python client registers a shared type (Attachment), two
// events referencing it, and Confluent's several-types-in-one-topic subject
// (<topic>-value: a union of references to the two event subjects); it
// serializes records both with use.latest.version (the union) and with each
// event's own schema id. An eventline group applies every record exactly
// once, into the generated Go types (one Attachment type for both events),
// none dead-lettered, and names each by its type.
func TestConfluentPythonReferencesApplied(t *testing.T) {
	f := testkit.Setup(t)
	brokers := testkit.Kafka(t)
	topic := testkit.Topic(t, brokers, 3)
	refs := []map[string]any{{"name": attachment, "subject": attachment}}
	var reg struct {
		Registered []struct {
			Subject string
			ID      int
			Version int
		}
	}
	confluent(t, map[string]any{"mode": "register_refs", "registry": f.RegistryURL, "schemas": []map[string]any{
		{"subject": attachment, "schema": text(t, attachment)},
		{"subject": topic + "-" + opened, "schema": text(t, opened), "references": refs},
		{"subject": topic + "-" + worked, "schema": text(t, worked), "references": refs},
		{"subject": topic + "-value", "schema": fmt.Sprintf("[%q, %q]", opened, worked), "references": []map[string]any{
			{"name": opened, "subject": topic + "-" + opened}, {"name": worked, "subject": topic + "-" + worked}}},
	}}, &reg)
	if len(reg.Registered) != 4 {
		t.Fatalf("registered %+v", reg)
	}

	const each = 10
	var union, own []map[string]any
	for i := range each {
		union = append(union, map[string]any{"type": opened, "record": openedRecord(i)}, map[string]any{"type": worked, "record": workedRecord(i)})
		own = append(own, map[string]any{"type": opened, "record": openedRecord(100 + i)}, map[string]any{"type": worked, "record": workedRecord(100 + i)})
	}
	var latest, perEvent struct{ Hex []string }
	confluent(t, map[string]any{"mode": "serialize_many", "registry": f.RegistryURL, "topic": topic, "latest": true, "subject": topic + "-value", "records": union}, &latest)
	confluent(t, map[string]any{"mode": "serialize_many", "registry": f.RegistryURL, "topic": topic, "latest": false, "records": own,
		"schemas": map[string]any{opened: map[string]any{"schema": text(t, opened), "references": refs}, worked: map[string]any{"schema": text(t, worked), "references": refs}}}, &perEvent)
	ids := map[int]bool{}
	var recs []*kgo.Record
	for i, h := range append(latest.Hex, perEvent.Hex...) {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) < 5 {
			t.Fatalf("record %d: %q", i, h)
		}
		ids[int(b[1])<<24|int(b[2])<<16|int(b[3])<<8|int(b[4])] = true
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%7), Value: b})
	}
	if len(ids) != 3 {
		t.Errorf("the records carry schema ids %v, want 3 (the union, and each event's own)", ids)
	}
	cl := testkit.Client(t, brokers)
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	if _, err := f.DB.Exec(context.Background(), `CREATE TABLE applied (event_id uuid PRIMARY KEY, type text NOT NULL, ref text NOT NULL, n int NOT NULL DEFAULT 1)`); err != nil {
		t.Fatal(err)
	}
	apply := func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, ref string) error {
		_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, type, ref) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ev.ID, ev.Type, ref)
		return err
	}
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, o *testevents.TicketOpened) error {
		if len(o.Attachments) != 1 || o.Attachments[0].SizeBytes != int64(1000+o.EstimateMinutes) || o.OpenedAt.UnixMilli() != 1_790_000_000_000+int64(o.EstimateMinutes) {
			return consumers.Permanent(fmt.Errorf("TicketOpened %+v", o))
		}
		return apply(ctx, tx, ev, o.TicketID)
	})
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, w *testevents.WorkLogged) error {
		var a testevents.Attachment = w.Evidence[0] // the one Go type both events share
		if a.SizeBytes != int64(7*(w.Minutes-10)) {
			return consumers.Permanent(fmt.Errorf("WorkLogged %+v", w))
		}
		return apply(ctx, tx, ev, w.EntryID)
	})
	g, err := consumers.New(consumers.Config{Group: testkit.UniqueName(t, "g"), Topics: []string{topic}, Brokers: brokers, DB: f.DB, Serde: f.Serde,
		Mux: mux, CreateTopics: true, RetryDelays: []time.Duration{200 * time.Millisecond}, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Run(ctx); err != nil {
			t.Errorf("group: %v", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	total := 4 * each
	testkit.WaitFor(t, 60*time.Second, "every record applied", func() bool {
		st := g.Stats()
		return st.Applied+st.DeadLettered >= int64(total)
	})
	if st := g.Stats(); st.Applied != int64(total) || st.DeadLettered != 0 {
		t.Fatalf("stats %+v: want %d applied, none dead-lettered", st, total)
	}
	var n, twice, types int
	if err := f.DB.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE n <> 1), count(DISTINCT type) FROM applied WHERE type IN ($1, $2)`, opened, worked).Scan(&n, &twice, &types); err != nil {
		t.Fatal(err)
	}
	if n != total || twice != 0 || types != 2 {
		t.Errorf("applied %d records of %d types, %d more than once; want %d of 2, none twice", n, types, twice, total)
	}
}

// The other way: eventline's producer registers the shared type and the
// events with references, the relay publishes them, and Confluent's Python
// deserializer (fetching the writer schema and its references by id) reads
// every record.
func TestConfluentPythonReadsRelayedReferences(t *testing.T) {
	f := testkit.Setup(t)
	brokers := testkit.Kafka(t)
	topic := testkit.UniqueName(t, "helpdesk")
	pipe := fmt.Appendf(nil, "topics: [{name: %s, partitions: 3, replication_factor: 1, events: [%s, %s]}]", topic, opened, worked)
	prod := f.Producer(t, pipe, testevents.Catalog(), &testevents.TicketOpened{}, &testevents.WorkLogged{})
	ctx := context.Background()
	tx, err := f.DB.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	att := []testevents.Attachment{{BlobID: "c4d3c2b1-0f9e-4d8c-b7a6-958473625140", Pages: 3, SizeBytes: 4096}}
	err = prod.Append(ctx, tx,
		producer.Message{AggregateType: "ticket", AggregateID: "t-1", Event: &testevents.TicketOpened{TicketID: "00000000-0000-4000-8000-000000000001", RequesterID: "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e", Attachments: att, EstimateMinutes: 5, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()}},
		producer.Message{AggregateType: "worklog", AggregateID: "w-1", Event: &testevents.WorkLogged{EntryID: "00000000-0000-4000-9000-000000000001", TicketID: "00000000-0000-4000-8000-000000000001", Minutes: 25, Billable: true, Evidence: att, LoggedAt: time.UnixMilli(1_790_000_100_000).UTC()}})
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Parse(pipe)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{DatabaseURL: f.DatabaseURL, Brokers: brokers, Pipeline: p, PollInterval: 100 * time.Millisecond, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
		r.Close()
	}()

	cl := testkit.Client(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*kgo.Record
	fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
	defer fcancel()
	for len(got) < 2 {
		fs := cl.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatalf("relayed %d records of 2", len(got))
		}
		got = append(got, fs.Records()...)
	}
	for _, rec := range got {
		var de struct {
			Record map[string]any
			Error  map[string]any
		}
		confluent(t, map[string]any{"mode": "deserialize", "registry": f.RegistryURL, "topic": topic, "hex": hex.EncodeToString(rec.Value)}, &de)
		if de.Error != nil {
			t.Fatalf("Confluent's deserializer: %v", de.Error)
		}
		key := "attachments"
		if _, ok := de.Record["evidence"]; ok {
			key = "evidence"
		}
		list, _ := de.Record[key].([]any)
		if len(list) != 1 || list[0].(map[string]any)["size_bytes"].(float64) != 4096 {
			t.Errorf("Confluent decoded %v", de.Record)
		}
	}
}
