package relay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
	"github.com/eventline/eventline/schemas"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type bundle struct {
	t       *testing.T
	dbURL   string
	db      *pgxpool.Pool
	brokers []string
	topic   string
	prod    *producer.Producer
	ce      *pipeline.CloudEvents // the topic's cloudevents option, if any
	kopts   []kgo.Opt             // the test's own Kafka clients' options (credentials)
}

func setup(t *testing.T) *bundle {
	t.Helper()
	f := testkit.Setup(t)
	topic := testkit.UniqueName(t, "tickets")
	prod := f.Producer(t, fmt.Appendf(nil, "topics: [{name: %s, partitions: 4, events: [helpdesk.tickets.TicketOpened, helpdesk.tickets.TicketAssigned]}]", topic),
		testevents.Catalog(), &testevents.TicketOpened{}, &testevents.TicketAssigned{})
	return &bundle{t: t, dbURL: f.DatabaseURL, db: f.DB, brokers: testkit.Kafka(t), topic: topic, prod: prod}
}

// pipe is the pipeline the bundle's relays publish by: the tickets topic.
func (b *bundle) pipe() *pipeline.Pipeline {
	return &pipeline.Pipeline{Topics: []pipeline.Topic{{Name: b.topic, Partitions: 4, ReplicationFactor: 1,
		Events: []string{"helpdesk.tickets.TicketOpened", "helpdesk.tickets.TicketAssigned"}, CloudEvents: b.ce}}}
}

// start runs a relay until the test ends (or cancel is called).
func (b *bundle) start(cfg relay.Config) (r *relay.Relay, cancel func()) {
	b.t.Helper()
	cfg.DatabaseURL = b.dbURL
	cfg.Brokers = b.brokers
	cfg.Pipeline = b.pipe()
	if cfg.Logger == nil {
		cfg.Logger = testkit.Logger(b.t)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.StandbyRetry == 0 {
		cfg.StandbyRetry = 200 * time.Millisecond
	}
	r, err := relay.New(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			b.t.Errorf("relay: %v", err)
		}
	}()
	var once sync.Once
	cancel = func() {
		once.Do(func() {
			stop()
			<-done
			r.Close()
		})
	}
	b.t.Cleanup(cancel)
	return r, cancel
}

// appendTickets appends n events per aggregate, aggregate versions 1..n, each
// event in its own transaction.
func (b *bundle) appendTickets(aggs []string, n int) {
	b.t.Helper()
	b.appendVersions(aggs, 1, n)
}

// appendVersions appends versions from..to of each aggregate, each event in
// its own transaction.
func (b *bundle) appendVersions(aggs []string, from, to int) {
	b.t.Helper()
	ctx := context.Background()
	for v := from; v <= to; v++ {
		for _, agg := range aggs {
			tx, err := b.db.Begin(ctx)
			if err != nil {
				b.t.Fatal(err)
			}
			err = b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: int64(v), Event: opened(agg)})
			if err == nil {
				err = tx.Commit(ctx)
			}
			if err != nil {
				b.t.Fatal(err)
			}
		}
	}
}

func opened(id string) *testevents.TicketOpened {
	return &testevents.TicketOpened{TicketID: id, RequesterID: id, Attachments: []testevents.Attachment{}, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()}
}

// consume reads the topic from the start until want records arrived.
func (b *bundle) consume(want int) []*kgo.Record {
	b.t.Helper()
	cl := testkit.Client(b.t, b.brokers, kgo.ConsumeTopics(b.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.t.Fatalf("read %d of %d records", len(out), want)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkOrder asserts every aggregate's records sit on one partition with
// versions 1..n in order, and returns the number of duplicates.
func checkOrder(t *testing.T, recs []*kgo.Record) (dups int) {
	t.Helper()
	part := map[string]int32{}
	last := map[string]int{}
	seen := map[string]bool{}
	for _, r := range recs {
		agg := string(r.Key)
		id := header(r, "eventline-event-id")
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		if p, ok := part[agg]; ok && p != r.Partition {
			t.Fatalf("aggregate %s on partitions %d and %d", agg, p, r.Partition)
		}
		part[agg] = r.Partition
		var v int
		fmt.Sscan(header(r, "eventline-aggregate-version"), &v)
		if v != last[agg]+1 {
			t.Fatalf("aggregate %s: version %d after %d", agg, v, last[agg])
		}
		last[agg] = v
	}
	return dups
}

func (b *bundle) outboxCount() int {
	var n int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM eventline_outbox`).Scan(&n); err != nil {
		b.t.Fatal(err)
	}
	return n
}

func TestRelayPublishesEveryRowInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b.appendTickets(aggs, 4) // before the relay starts: the backlog
	probe, err := relay.New(relay.Config{DatabaseURL: b.dbURL, Brokers: b.brokers, Pipeline: b.pipe()})
	if err != nil {
		t.Fatal(err)
	}
	rows, oldest, err := probe.Backlog(context.Background())
	probe.Close()
	if err != nil || rows != 20 || oldest <= 0 {
		t.Fatalf("backlog before the relay: %d rows, oldest %s, %v", rows, oldest, err)
	}
	r, _ := b.start(relay.Config{BatchSize: 7})
	b.appendTickets(aggs, 0)
	recs := b.consume(20)
	if dups := checkOrder(t, recs); dups != 0 {
		t.Errorf("%d duplicates without any failure", dups)
	}
	rec := recs[0]
	for _, h := range []string{"eventline-event-id", "eventline-event-type", "eventline-aggregate-type", "eventline-aggregate-id", "eventline-aggregate-version"} {
		if header(rec, h) == "" {
			t.Errorf("record lacks header %s", h)
		}
	}
	if header(rec, "eventline-event-type") != "helpdesk.tickets.TicketOpened" || !bytes.Equal([]byte(header(rec, "eventline-aggregate-id")), rec.Key) {
		t.Errorf("headers: %v", rec.Headers)
	}
	if _, _, err := schemas.SplitHeader(rec.Value); err != nil {
		t.Errorf("value is not Confluent-framed: %v", err)
	}
	for _, h := range rec.Headers {
		if strings.HasPrefix(h.Key, "ce_") || h.Key == "content-type" {
			t.Errorf("a topic without cloudevents has header %s", h.Key)
		}
	}
	// Rows are deleted once acked.
	waitFor(t, func() bool { return b.outboxCount() == 0 && r.Stats().Published == 20 })
	if rows, oldest, err := r.Backlog(context.Background()); err != nil || rows != 0 || oldest != 0 {
		t.Errorf("backlog after the drain: %d rows, oldest %s, %v", rows, oldest, err)
	}
	if s := r.Stats(); !s.Leader || s.Batches < 3 {
		t.Errorf("stats %+v", s)
	}
}

// A record that can never be produced is parked with its error and the
// relay carries on with the next rows; requeue puts it back.
func TestRelayParksTooLargeRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	agg := uuid.NewString()
	if _, err := b.db.Exec(ctx, `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ($1, $2, $3, gen_random_uuid(), 'helpdesk.tickets.TicketOpened', 'ticket', $4)`, b.topic, []byte(agg), bytes.Repeat([]byte{0}, 2<<20), agg); err != nil {
		t.Fatal(err)
	}
	b.appendTickets([]string{agg}, 2)
	r, cancel := b.start(relay.Config{})
	recs := b.consume(2)
	checkOrder(t, recs)
	waitFor(t, func() bool { return r.Stats().Parked == 1 && b.outboxCount() == 0 })
	cancel()

	parked, err := relay.ListParked(ctx, b.db, "")
	if err != nil || len(parked) != 1 || !strings.Contains(parked[0].Error, "MESSAGE_TOO_LARGE") || parked[0].Size != 2<<20 {
		t.Fatalf("parked: %+v, %v", parked, err)
	}
	ok, err := relay.Requeue(ctx, b.db, "", parked[0].ID)
	if err != nil || !ok || b.outboxCount() != 1 {
		t.Fatalf("requeue: %v %v, outbox %d", ok, err, b.outboxCount())
	}
	if ok, err := relay.Requeue(ctx, b.db, "", 999999); err != nil || ok {
		t.Fatalf("requeue of a missing id: %v %v", ok, err)
	}
}

// Two relays: one leads, the other stands by and takes over when the first
// stops; nothing is lost and every aggregate stays in order.
func TestRelayStandbyTakesOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	first, stopFirst := b.start(relay.Config{})
	waitFor(t, func() bool { return first.Stats().Leader })
	second, _ := b.start(relay.Config{})
	b.appendTickets(aggs, 3)
	waitFor(t, func() bool { return first.Stats().Published == 9 })
	if second.Stats().Leader || second.Stats().Published != 0 {
		t.Fatalf("standby published while the leader lived: %+v", second.Stats())
	}
	stopFirst()
	waitFor(t, func() bool { return second.Stats().Leader })
	b.appendTickets(aggs, 0)
	ctx := context.Background()
	for v := 4; v <= 6; v++ {
		for _, agg := range aggs {
			tx, _ := b.db.Begin(ctx)
			if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: int64(v), Event: opened(agg)}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs := b.consume(18)
	checkOrder(t, recs)
	waitFor(t, func() bool { return second.Stats().Published == 9 })
}

// With the database unreachable the relay keeps retrying (logging the
// redacted address) and stops cleanly when asked.
func TestRelayDatabaseDownAtStart(t *testing.T) {
	t.Parallel()
	var logs testkit.SyncBuffer
	r, err := relay.New(relay.Config{
		DatabaseURL: "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=1",
		Brokers:     testkit.Kafka(t),
		Pipeline:    testPipeline(t),
		MaxBackoff:  50 * time.Millisecond,
		Logger:      newLogger(&logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, func() bool { return strings.Count(logs.String(), "connecting to postgres") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(logs.String(), "hunter2") || !strings.Contains(logs.String(), "xxxxx@127.0.0.1:1") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

func TestRelayRetentionMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(relay.Config{Retention: time.Hour})
	b.appendTickets([]string{uuid.NewString()}, 3)
	b.consume(3)
	waitFor(t, func() bool { return r.Stats().Published == 3 })
	var kept, unpublished int
	b.db.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM eventline_outbox`).Scan(&kept, &unpublished)
	if kept != 3 || unpublished != 0 {
		t.Fatalf("retention mode: %d rows kept, %d unpublished", kept, unpublished)
	}
}

// In retention mode the cleanup runs while rows keep flowing too: the
// leader drains every Linger then and never idles, and the cleanup used to
// wait for an idle moment.
func TestRetentionCleanupWhileRowsFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(relay.Config{Retention: 300 * time.Millisecond, Linger: 50 * time.Millisecond})
	waitFor(t, func() bool { return r.Stats().Leader })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writers sync.WaitGroup
	for range 4 { // enough that every drain finds rows: the relay never idles
		writers.Go(func() {
			for ctx.Err() == nil {
				b.appendTickets([]string{uuid.NewString()}, 1)
			}
		})
	}
	// Rows published more than the retention ago are deleted while the
	// writer keeps going.
	waitFor(t, func() bool { return r.Stats().Published >= 50 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		var expired, kept int
		if err := b.db.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE published_at < now() - interval '300 milliseconds'), count(*)
			FROM eventline_outbox WHERE published_at IS NOT NULL`).Scan(&expired, &kept); err != nil {
			t.Fatal(err)
		}
		var first int64
		if err := b.db.QueryRow(context.Background(), `SELECT coalesce(min(id), 0) FROM eventline_outbox`).Scan(&first); err != nil {
			t.Fatal(err)
		}
		if first > 1 && kept > 0 { // the first rows are gone, newer ones kept
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cleanup while rows flow: oldest id %d, %d published rows kept (%d past the retention)", first, kept, expired)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	writers.Wait()
}

func TestRelayConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := relay.New(relay.Config{BatchSize: -1})
	for _, want := range []string{"DatabaseURL", "Brokers", "BatchSize"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %s", err, want)
		}
	}
}

// With the full drain effectively off (PollInterval an hour), every event
// still arrives through the probes alone, including rows whose
// transactions took their ids before others and committed after them (each
// holds its transaction open a random few milliseconds after the insert):
// those appear below the highest id read, where the probe watches the gaps
// (probe.go). Each round is a burst of concurrent commits followed by
// silence; a row stranded at the end of a burst would never be published.
func TestRelayNoLostWakeups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(relay.Config{PollInterval: time.Hour, BatchSize: 20})
	waitFor(t, func() bool { return r.Stats().Leader })
	ctx := context.Background()
	const rounds, writers, each = 60, 8, 4
	aggs := make([]string, writers)
	for i := range aggs {
		aggs[i] = uuid.NewString()
	}
	version := 0
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(agg string) {
				defer wg.Done()
				for i := 1; i <= each; i++ {
					tx, err := b.db.Begin(ctx)
					if err == nil {
						err = b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: int64(version + i), Event: opened(agg)})
						if err == nil {
							// Hold the transaction open a moment after
							// the insert took its id: later ids may
							// commit first.
							_, err = tx.Exec(ctx, `SELECT pg_sleep(random() * 0.004)`)
						}
						if err == nil {
							err = tx.Commit(ctx)
						}
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}(aggs[w])
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		version += each
		deadline := time.Now().Add(10 * time.Second)
		for b.outboxCount() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d rows stranded in the outbox with no wake-up", round, b.outboxCount())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(t, func() bool { return r.Stats().Published == rounds*writers*each })
	checkOrder(t, b.consume(rounds*writers*each))
}

// A topic whose max.message.bytes is below the client's default batch size:
// the relay keeps its batches within the topic's limit, so records that fit
// are published and only the one that cannot fit is parked (a broker
// rejecting a whole batch would fail every record in it).
func TestRelayRespectsTopicMaxMessageBytes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	big := func(id string, files int) *testevents.TicketOpened {
		o := opened(id)
		for i := 0; i < files; i++ {
			o.Attachments = append(o.Attachments, testevents.Attachment{BlobID: id, Pages: 1, SizeBytes: 100})
		}
		return o
	}
	agg := uuid.NewString()
	for v := 1; v <= 12; v++ {
		files := 35 // about 1.6 KB: several of them exceed the 4 KiB limit together
		if v == 6 {
			files = 150 // about 6.5 KB: cannot fit at all
		}
		tx, _ := b.db.Begin(ctx)
		if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: int64(v), Event: big(agg, files)}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cfg := relay.Config{DatabaseURL: b.dbURL, Brokers: b.brokers, Logger: testkit.Logger(t), PollInterval: 200 * time.Millisecond,
		Pipeline: b.pipe()}
	cfg.Pipeline.Topics[0].Configs = map[string]string{"max.message.bytes": "4096"}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { cancel(); <-done; r.Close() }()
	waitFor(t, func() bool { return r.Stats().Published+r.Stats().Parked == 12 })
	if s := r.Stats(); s.Published != 11 || s.Parked != 1 {
		t.Fatalf("published %d, parked %d; want 11 and 1", s.Published, s.Parked)
	}
	parked, err := relay.ListParked(ctx, b.db, "")
	if err != nil || len(parked) != 1 || parked[0].Size < 4096 {
		t.Fatalf("parked: %+v, %v", parked, err)
	}
}

// Large events make small batches: with a 1 MiB byte budget, 200 rows of
// 100 KB are drained in at least 19 batches (by rows alone it would be one
// batch of 20 MB in the relay's memory), every row once, in order per key.
func TestRelayBatchesByBytes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Rows written directly: 100 KB values the relay passes on as they are.
	if _, err := b.db.Exec(ctx, `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		SELECT $1, convert_to('k' || (i % 4), 'UTF8'), '\x00'::bytea || int4send(i) || decode(repeat('ab', 100000), 'hex'), gen_random_uuid(), 'helpdesk.tickets.TicketOpened', 'ticket', 'k' || (i % 4)
		FROM generate_series(1, 200) AS i`, b.topic); err != nil {
		t.Fatal(err)
	}
	r, _ := b.start(relay.Config{BatchBytes: 1 << 20})
	// The counters move just after a batch's rows are deleted: wait for both.
	waitFor(t, func() bool { return b.outboxCount() == 0 && r.Stats().Published >= 200 })
	if s := r.Stats(); s.Published != 200 || s.Batches < 19 {
		t.Errorf("stats %+v: want 200 published in at least 19 batches", s)
	}
	recs := b.consume(200)
	last := map[string]uint32{}
	for _, rec := range recs {
		seq := binary.BigEndian.Uint32(rec.Value[1:5])
		if seq <= last[string(rec.Key)] {
			t.Fatalf("key %s: %d after %d", rec.Key, seq, last[string(rec.Key)])
		}
		last[string(rec.Key)] = seq
	}
}

// A transaction that holds its outbox id longer than the relay watches the
// gap (PollInterval) commits while rows of other aggregates flow, and its
// aggregate's next event is appended right after: the relay must publish
// the late row first. A read that started above what it had read (skipping
// the deleted rows' index entries) would find the next event before the
// late row, which only a read from the lowest id sees again.
func TestLateCommitPrecedesItsAggregatesNextEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, _ := b.start(relay.Config{PollInterval: 300 * time.Millisecond})
	waitFor(t, func() bool { return r.Stats().Leader })
	ctx := context.Background()
	appendOne := func(tx pgx.Tx, agg string, version int) {
		t.Helper()
		if err := b.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: int64(version), Event: opened(agg)}); err != nil {
			t.Fatal(err)
		}
	}
	commitOne := func(agg string, version int) {
		t.Helper()
		tx, err := b.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		appendOne(tx, agg, version)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	flow, late := uuid.NewString(), uuid.NewString()
	commitOne(flow, 1)
	waitFor(t, func() bool { return r.Stats().Published == 1 })

	held, err := b.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	appendOne(held, late, 1) // takes its id now, commits a second later
	v := 1
	// Rows of another aggregate flow past the held id for longer than the
	// relay watches it.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		v++
		commitOne(flow, v)
		time.Sleep(5 * time.Millisecond) // pacing the flow, not synchronising
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	commitOne(late, 2) // exists only once version 1 committed (the advisory lock)
	for range 20 {     // the flow goes on while the relay reads both
		v++
		commitOne(flow, v)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, func() bool { return r.Stats().Published == uint64(v+2) })
	checkOrder(t, b.consume(v+2))
}
