package consumers_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

// groupEnv is one test's broker, topic, database and registry.
type groupEnv struct {
	brokers []string
	topic   string
	db      *pgxpool.Pool
	serde   *schemas.Serde
	id      int
	prod    *kgo.Client
	regURL  string
	opts    []kgo.Opt // every client's (TLS and SASL on a secured cluster)
	fx      *testkit.Fixture
}

func newGroupEnv(t testing.TB, partitions int32) *groupEnv {
	t.Helper()
	return newGroupEnvOn(t, testkit.Kafka(t), partitions)
}

func newGroupEnvOn(t testing.TB, brokers []string, partitions int32, opts ...kgo.Opt) *groupEnv {
	t.Helper()
	return newReplicatedGroupEnv(t, brokers, partitions, 1, opts...)
}

// newReplicatedGroupEnv's topic has replicas replicas per partition; opts
// are every client's (TLS and SASL on a secured cluster).
func newReplicatedGroupEnv(t testing.TB, brokers []string, partitions int32, replicas int16, opts ...kgo.Opt) *groupEnv {
	t.Helper()
	f := testkit.Setup(t)
	e := &groupEnv{brokers: brokers, db: f.DB, serde: f.Serde, regURL: f.RegistryURL, opts: opts, fx: f}
	e.topic = testkit.ReplicatedTopic(t, e.brokers, partitions, replicas, opts...)
	// applied counts applications per event (n > 1 is a double apply) and
	// records their order.
	if _, err := e.db.Exec(context.Background(), `CREATE TABLE applied (event_id uuid PRIMARY KEY, key text NOT NULL, grp text NOT NULL DEFAULT '',
		attempt int NOT NULL, seq bigserial, n int NOT NULL DEFAULT 1, early_ms bigint NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	e.id = f.RegisterEvent(t, e.topic+"-"+info.Name, testevents.Catalog(), info.Name)
	e.prod = testkit.Client(t, e.brokers, append([]kgo.Opt{kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil))}, opts...)...)
	return e
}

// event builds a TicketOpened record for key with a fresh event id.
func (e *groupEnv) event(t testing.TB, key string) (*kgo.Record, uuid.UUID) {
	t.Helper()
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	v, err := schemas.Encode(e.id, info.Schema, &testevents.TicketOpened{TicketID: key, RequesterID: key, Attachments: []testevents.Attachment{}, EstimateMinutes: 1, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	return &kgo.Record{Topic: e.topic, Key: []byte(key), Value: v, Headers: []kgo.RecordHeader{
		{Key: headers.EventID, Value: []byte(id.String())},
		{Key: headers.EventType, Value: []byte(info.Name)},
		{Key: headers.AggregateType, Value: []byte("ticket")},
		{Key: headers.AggregateID, Value: []byte(key)},
	}}, id
}

func (e *groupEnv) produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// recordingHandler inserts (or counts again) the event in applied; fail
// says whether this attempt of ev must fail.
func recordingHandler(group string, fail func(ev *consumers.Event) error) consumers.HandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
		if fail != nil {
			if err := fail(ev); err != nil {
				return err
			}
		}
		early := int64(0)
		if ms, err := strconv.ParseInt(ev.Headers[headers.DueAt], 10, 64); err == nil {
			if d := time.Until(time.UnixMilli(ms)); d > 0 {
				early = d.Milliseconds() + 1
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, grp, attempt, early_ms) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ev.ID, ev.AggregateID, group, ev.Attempt, early)
		return err
	}
}

// run starts a Group and stops it when the test ends (or when stop is called).
func (e *groupEnv) run(t testing.TB, cfg consumers.Config) (*consumers.Group, func()) {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = testkit.UniqueName(t, "g")
	}
	cfg.Topics = []string{e.topic}
	cfg.Brokers = e.brokers
	cfg.DB = e.db
	cfg.Serde = e.serde
	cfg.CreateTopics = true
	cfg.KafkaOpts = append(slices.Clip(e.opts), cfg.KafkaOpts...)
	if cfg.Logger == nil {
		cfg.Logger = testkit.Logger(t)
	}
	g, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("group run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return g, stop
}

func (e *groupEnv) count(t testing.TB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var errFlaky = errors.New("flaky: not yet")

var fastDelays = []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond}

// A handler failing twice then succeeding: applied once, from retry.2,
// never before its due time; the other events flow meanwhile.
func TestRetryChainAppliesOnceFromRetry2(t *testing.T) {
	e := newGroupEnv(t, 3)
	flaky, flakyID := e.event(t, "flaky")
	e.produce(t, flaky)
	var others []*kgo.Record
	for i := range 30 {
		r, _ := e.event(t, fmt.Sprintf("k%d", i))
		others = append(others, r)
	}
	e.produce(t, others...)
	var mu sync.Mutex
	attempts := []int{}
	g, _ := e.run(t, consumers.Config{RetryDelays: fastDelays, Handler: recordingHandler("", func(ev *consumers.Event) error {
		if ev.ID != flakyID {
			return nil
		}
		mu.Lock()
		attempts = append(attempts, ev.Attempt)
		mu.Unlock()
		if ev.Attempt < 2 {
			return errFlaky
		}
		return nil
	})})
	testkit.WaitFor(t, 30*time.Second, "the flaky event applied", func() bool {
		return e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1`, flakyID) == 1
	})
	testkit.WaitFor(t, 30*time.Second, "all events applied", func() bool {
		return e.count(t, `SELECT count(*) FROM applied`) == 31
	})
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, flakyID); a != 2 {
		t.Errorf("flaky event applied at attempt %d, want 2 (from retry.2)", a)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE early_ms > 0`); n != 0 {
		t.Errorf("%d events processed before their due time", n)
	}
	mu.Lock()
	if fmt.Sprint(attempts) != "[0 1 2]" {
		t.Errorf("flaky attempts %v, want [0 1 2]", attempts)
	}
	mu.Unlock()
	// Stats count a batch once its copies are produced, just after its
	// rows commit: wait for them rather than read them once.
	waitStats(t, g, "2 retried, 0 dead-lettered, 31 applied", func(st consumers.Stats) bool {
		return st.Retried == 2 && st.DeadLettered == 0 && st.Applied == 31
	})
}

// Garbage bytes, an unknown schema id and a forged event id header
// land in the DLT with their error headers, and the partition keeps
// flowing behind them.
func TestPoisonRecordsGoToDLT(t *testing.T) {
	e := newGroupEnv(t, 1)
	garbage, _ := e.event(t, "garbage")
	garbage.Value = []byte("definitely not avro")
	unknown, _ := e.event(t, "unknown-id")
	v := append([]byte{0}, binary.BigEndian.AppendUint32(nil, 987654)...)
	unknown.Value = append(v, unknown.Value[5:]...)
	badID, _ := e.event(t, "bad-id")
	badID.Headers[0] = kgo.RecordHeader{Key: headers.EventID, Value: []byte("not-a-uuid")}
	e.produce(t, garbage, unknown, badID)
	var good []*kgo.Record
	for i := range 10 {
		r, _ := e.event(t, fmt.Sprintf("good%d", i))
		good = append(good, r)
	}
	e.produce(t, good...)
	group := testkit.UniqueName(t, "g")
	g, _ := e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, Handler: recordingHandler(group, nil)})
	testkit.WaitFor(t, 30*time.Second, "good events applied", func() bool {
		return e.count(t, `SELECT count(*) FROM applied`) == 10
	})
	dlt := readAll(t, e.brokers, consumers.DLTTopic(e.topic, group), 3)
	want := []struct{ key, class string }{{"garbage", consumers.ClassDecode}, {"unknown-id", consumers.ClassDecode}, {"bad-id", consumers.ClassNoEventID}}
	for i, w := range want {
		r := dlt[i]
		h := headerMap(r)
		if string(r.Key) != w.key || h[headers.ErrorClass] != w.class {
			t.Errorf("DLT record %d: key %q class %q, want %q %q", i, r.Key, h[headers.ErrorClass], w.key, w.class)
		}
		if h[headers.OriginalTopic] != e.topic || h[headers.OriginalOffset] != strconv.Itoa(i) || h[headers.OriginalPartition] != "0" {
			t.Errorf("DLT record %d: original headers %v", i, h)
		}
		if h[headers.ErrorMessage] == "" || h[headers.Group] != group || h[headers.FirstFailureAt] == "" {
			t.Errorf("DLT record %d: missing error bookkeeping: %v", i, h)
		}
	}
	if msg := headerMap(dlt[1])[headers.ErrorMessage]; !containsAll(msg, "987654") {
		t.Errorf("unknown schema id message %q does not name the id", msg)
	}
	waitStats(t, g, "3 dead-lettered, none retried", func(st consumers.Stats) bool {
		return st.DeadLettered == 3 && st.Retried == 0
	})
}

// Key order: the first event of key K fails twice; K's later events follow
// it through the chain and are applied after it, in order, while another
// key flows past.
func TestKeyOrderAcrossRetries(t *testing.T) {
	e := newGroupEnv(t, 1)
	var kIDs []uuid.UUID
	var recs []*kgo.Record
	for i := range 5 {
		r, id := e.event(t, "K")
		recs = append(recs, r)
		kIDs = append(kIDs, id)
		o, _ := e.event(t, fmt.Sprintf("other%d", i))
		recs = append(recs, o)
	}
	e.produce(t, recs...)
	first := kIDs[0]
	g, _ := e.run(t, consumers.Config{KeyOrder: true, RetryDelays: fastDelays, Handler: recordingHandler("", func(ev *consumers.Event) error {
		if ev.ID == first && ev.Attempt < 2 {
			return errFlaky
		}
		return nil
	})})
	testkit.WaitFor(t, 30*time.Second, "all events applied", func() bool {
		return e.count(t, `SELECT count(*) FROM applied`) == 10
	})
	rows, err := e.db.Query(context.Background(), `SELECT event_id FROM applied WHERE key = 'K' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(kIDs) {
		t.Errorf("key K applied in order %v, want %v", got, kIDs)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE key <> 'K' AND seq > (SELECT seq FROM applied WHERE event_id = $1)`, first); n != 0 {
		t.Errorf("%d other-key events waited for K's retries", n)
	}
	if n := e.count(t, `SELECT count(*) FROM eventline_consumer_chain`); n != 0 {
		t.Errorf("%d chain rows left behind", n)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d double applications", n)
	}
	waitStats(t, g, "an event deferred behind K's first", func(st consumers.Stats) bool { return st.Deferred > 0 })
}

func headerMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strconvContains(s, sub) {
			return false
		}
	}
	return true
}

func strconvContains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// readAll reads n records of topic from the start.
func readAll(t testing.TB, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := testkit.Client(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s", len(out), n, topic)
		}
		f.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// waitStats waits until the group's counters satisfy ok; on timeout it
// names the last counters seen.
func waitStats(t *testing.T, g *consumers.Group, want string, ok func(consumers.Stats) bool) {
	t.Helper()
	var last consumers.Stats
	deadline := time.Now().Add(10 * time.Second)
	for last = g.Stats(); !ok(last); last = g.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want %s", last, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A follower deferred while its key's failed event waits on retry.2 is
// due just after that event's copy (100 ms later), not a retry delay after
// its own deferral: the key's events leave the chain together. Both are
// then applied, in order, and nothing is dead-lettered.
func TestDeferredFollowerDueWithItsPredecessor(t *testing.T) {
	e := newGroupEnv(t, 1)
	first, firstID := e.event(t, "K")
	e.produce(t, first)
	delays := []time.Duration{300 * time.Millisecond, 3 * time.Second, 5 * time.Second}
	group := testkit.UniqueName(t, "g")
	e.run(t, consumers.Config{Group: group, KeyOrder: true, RetryDelays: delays, Handler: recordingHandler("", func(ev *consumers.Event) error {
		if ev.ID == firstID && ev.Attempt < 2 {
			return errFlaky
		}
		return nil
	})})
	// The first event is on retry.2 (due 3 s after its second failure).
	atRetry2 := readAll(t, e.brokers, consumers.RetryTopic(e.topic, group, 2), 1)[0]
	follower, followerID := e.event(t, "K")
	e.produce(t, follower)
	cp := readAll(t, e.brokers, consumers.RetryTopic(e.topic, group, 1), 2)[1]
	if id := headerMap(cp)[headers.EventID]; id != followerID.String() {
		t.Fatalf("retry.1's second record is %s, want the follower %s", id, followerID)
	}
	due := func(r *kgo.Record) int64 {
		ms, err := strconv.ParseInt(headerMap(r)[headers.DueAt], 10, 64)
		if err != nil {
			t.Fatalf("due-at header: %v", err)
		}
		return ms
	}
	if got, want := due(cp), due(atRetry2)+100; got != want {
		t.Errorf("follower due at %d, want %d (its predecessor's due + 100 ms); it was deferred %d ms before that",
			got, want, want-cp.Timestamp.UnixMilli())
	}
	testkit.WaitFor(t, 30*time.Second, "both applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == 2 })
	if n := e.count(t, `SELECT count(*) FROM applied a JOIN applied b ON a.seq < b.seq WHERE a.event_id = $1 AND b.event_id = $2`, firstID, followerID); n != 1 {
		t.Error("the follower was applied before the event it followed")
	}
}

// Key order with a key far larger than a btree entry may be: its events
// still follow each other through the chain (the chain stores a digest of
// long keys; a 4,000-byte key used to fail every insert and retry forever).
func TestKeyOrderWithHugeKeys(t *testing.T) {
	e := newGroupEnv(t, 1)
	huge := strings.Repeat("k", 4000)
	first, firstID := e.event(t, huge)
	second, secondID := e.event(t, huge)
	e.produce(t, first, second)
	e.run(t, consumers.Config{KeyOrder: true, RetryDelays: fastDelays, Handler: recordingHandler("", func(ev *consumers.Event) error {
		if ev.ID == firstID && ev.Attempt == 0 {
			return errFlaky
		}
		return nil
	})})
	testkit.WaitFor(t, 30*time.Second, "both applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == 2 })
	if n := e.count(t, `SELECT count(*) FROM applied a JOIN applied b ON a.seq < b.seq WHERE a.event_id = $1 AND b.event_id = $2`, firstID, secondID); n != 1 {
		t.Error("the second event of the key was applied before the first")
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, secondID); a != 1 {
		t.Errorf("the second event applied at attempt %d, want 1 (deferred behind the first)", a)
	}
}

// A poll's small batches of several partitions are applied in one
// transaction (one AfterApply call spans partitions). The guarantees hold
// through it: a handler failing in the shared transaction sends only its
// event down the retry chain, a poison event goes to the DLT, every other
// event is applied exactly once, and every partition's offset is
// committed to its end.
func TestSmallBatchesOfPartitionsShareATransaction(t *testing.T) {
	e := newGroupEnv(t, 4)
	var recs []*kgo.Record
	var flakyID, poisonID uuid.UUID
	for i := range 24 {
		r, id := e.event(t, fmt.Sprintf("k%d", i))
		switch i {
		case 5:
			flakyID = id
		case 17:
			poisonID = id
		}
		recs = append(recs, r)
	}
	e.produce(t, recs...)
	parts := map[int32]bool{}
	for _, r := range recs {
		parts[r.Partition] = true
	}
	if len(parts) < 2 {
		t.Fatalf("the events landed on %d partition(s); the test needs several", len(parts))
	}
	group := testkit.UniqueName(t, "g")
	var mu sync.Mutex
	widest := 0 // most source partitions in one apply
	g, err := consumers.New(consumers.Config{Group: group, Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
		CreateTopics: true, KafkaOpts: e.opts, Logger: testkit.Logger(t), RetryDelays: fastDelays,
		Handler: recordingHandler("", func(ev *consumers.Event) error {
			switch {
			case ev.ID == flakyID && ev.Attempt == 0:
				return errFlaky
			case ev.ID == poisonID:
				return consumers.Permanent(errors.New("poison"))
			}
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	hook.AfterApply(g, func(rs []hook.Result) {
		seen := map[int32]bool{}
		for _, r := range rs {
			if r.Record.Topic == e.topic {
				seen[r.Record.Partition] = true
			}
		}
		mu.Lock()
		widest = max(widest, len(seen))
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	testkit.WaitFor(t, 30*time.Second, "23 events applied, the flaky one from retry.1", func() bool {
		return e.count(t, `SELECT count(*) FROM applied`) == 23
	})
	waitStats(t, g, "1 retried, 1 dead-lettered, 23 applied", func(st consumers.Stats) bool {
		return st.Retried == 1 && st.DeadLettered == 1 && st.Applied == 23
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, flakyID); a != 1 {
		t.Errorf("the flaky event was applied at attempt %d, want 1", a)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1`, poisonID); n != 0 {
		t.Errorf("the poison event was applied")
	}
	mu.Lock()
	if widest < 2 {
		t.Errorf("no apply spanned two partitions (widest %d): the poll's batches were not coalesced", widest)
	}
	mu.Unlock()
	adm := kadm.NewClient(testkit.Client(t, e.brokers, e.opts...))
	committed, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(context.Background(), e.topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(lo kadm.ListedOffset) {
		if o, _ := committed.Lookup(e.topic, lo.Partition); o.At != lo.Offset {
			t.Errorf("partition %d: committed offset %d, want its end %d", lo.Partition, o.At, lo.Offset)
		}
	})
}

// Config.Linger: a record after a quiet spell is applied at once, while a
// record that follows a busy poll waits Linger and shares its transaction
// with what arrives meanwhile.
func TestLingerWaitsOnlyWhileRecordsFlow(t *testing.T) {
	e := newGroupEnv(t, 2)
	const linger = time.Second
	var mu sync.Mutex
	applies := [][]string{} // the event ids of each apply
	assigned := make(chan struct{})
	var once sync.Once
	g, err := consumers.New(consumers.Config{Group: testkit.UniqueName(t, "g"), Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
		CreateTopics: true, KafkaOpts: e.opts, Logger: testkit.Logger(t), Linger: linger, Handler: recordingHandler("", nil),
		OnAssigned: func(map[string][]int32) { once.Do(func() { close(assigned) }) }})
	if err != nil {
		t.Fatal(err)
	}
	hook.AfterApply(g, func(rs []hook.Result) {
		var ids []string
		for _, r := range rs {
			for _, h := range r.Record.Headers {
				if h.Key == headers.EventID {
					ids = append(ids, string(h.Value))
				}
			}
		}
		mu.Lock()
		applies = append(applies, ids)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-assigned
	applied := func(n int64) func() bool {
		return func() bool { return e.count(t, `SELECT count(*) FROM applied`) == n }
	}
	first, _ := e.event(t, "a")
	e.produce(t, first)
	testkit.WaitFor(t, 10*time.Second, "the first event applied", applied(1))

	time.Sleep(linger + 200*time.Millisecond) // a quiet spell (the scenario, not a wait for the group)
	lone, _ := e.event(t, "b")
	start := time.Now()
	e.produce(t, lone)
	testkit.WaitFor(t, 10*time.Second, "the event after the quiet spell applied", applied(2))
	if took := time.Since(start); took >= linger*4/5 {
		t.Errorf("an event after a quiet spell took %v to apply: it lingered (Linger %v)", took, linger)
	}

	// Right after that apply (the previous poll returned a record), c is
	// flowing: it lingers, and d, produced meanwhile, joins its apply.
	c, cID := e.event(t, "c")
	d, dID := e.event(t, "d")
	e.produce(t, c)
	time.Sleep(100 * time.Millisecond) // d arrives while c lingers (pacing, not a wait for the group)
	e.produce(t, d)
	testkit.WaitFor(t, 10*time.Second, "c and d applied", applied(4))
	mu.Lock()
	defer mu.Unlock()
	for _, ids := range applies {
		if slices.Contains(ids, cID.String()) {
			if !slices.Contains(ids, dID.String()) {
				t.Errorf("c was applied without d (applies %v): it did not linger", applies)
			}
			return
		}
	}
	t.Errorf("c's apply not seen: %v", applies)
}
