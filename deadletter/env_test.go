package deadletter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// env is one test's broker, source topic, database and registry, for
// groups whose dead letters the tests list and replay.
type env struct {
	brokers []string
	topic   string
	db      *pgxpool.Pool
	serde   *schemas.Serde
	id      int // TicketOpened's schema id
	prod    *kgo.Client
}

var fastDelays = []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	f := testkit.Setup(t)
	e := &env{brokers: testkit.Kafka(t), db: f.DB, serde: f.Serde}
	e.topic = testkit.Topic(t, e.brokers, partitions)
	// applied holds each applied event once, with the attempt that applied it.
	if _, err := e.db.Exec(context.Background(), `CREATE TABLE applied (event_id uuid PRIMARY KEY, grp text NOT NULL, attempt int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	e.id = f.RegisterEvent(t, e.topic+"-"+info.Name, testevents.Catalog(), info.Name)
	e.prod = testkit.Client(t, e.brokers, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	return e
}

// event builds a TicketOpened record for key with a fresh event id.
func (e *env) event(t *testing.T, key string) (*kgo.Record, uuid.UUID) {
	t.Helper()
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	v, err := schemas.Encode(e.id, info.Schema, &testevents.TicketOpened{TicketID: key, RequesterID: key, Attachments: []testevents.Attachment{}, EstimateMinutes: 1, Channel: "MAIL"})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	return &kgo.Record{Topic: e.topic, Key: []byte(key), Value: v, Headers: []kgo.RecordHeader{
		{Key: headers.EventID, Value: []byte(id.String())},
		{Key: headers.EventType, Value: []byte(info.Name)},
	}}, id
}

func (e *env) produce(t *testing.T, p *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// handler records the event in applied unless fail says this attempt fails.
func handler(group string, fail func(ev *consumers.Event) error) consumers.HandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
		if fail != nil {
			if err := fail(ev); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, grp, attempt) VALUES ($1, $2, $3)`, ev.ID, group, ev.Attempt)
		return err
	}
}

// group builds a group on e's topic; run starts it until the test ends.
func (e *env) group(t *testing.T, cfg consumers.Config) *consumers.Group {
	t.Helper()
	cfg.Topics, cfg.Brokers, cfg.DB, cfg.Serde, cfg.CreateTopics, cfg.Logger = []string{e.topic}, e.brokers, e.db, e.serde, true, testkit.Logger(t)
	g, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (e *env) run(t *testing.T, cfg consumers.Config) *consumers.Group {
	t.Helper()
	g := e.group(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("group run: %v", err)
			}
		})
	})
	return g
}

func (e *env) count(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// readAll reads n records of topic from the start and returns their
// headers.
func readAll(t *testing.T, brokers []string, topic string, n int) []map[string]string {
	t.Helper()
	cl := testkit.Client(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []map[string]string
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s", len(out), n, topic)
		}
		f.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			out = append(out, h)
		})
	}
	return out
}

// deadRecord is a record of dlt (partition p) with the bookkeeping headers
// kv (key, value pairs), as the group would write it.
func deadRecord(dlt string, p int32, value []byte, kv ...string) *kgo.Record {
	r := &kgo.Record{Topic: dlt, Partition: p, Value: value}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}
