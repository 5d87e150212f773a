package deadletter_test

import (
	"context"
	"crypto/rand"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/deadletter"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

// A replay from group A's DLT reaches group A only: A applies the event
// once, from retry.1; group B, which applied everything the first time,
// never sees anything again. A record replayed too often is refused.
func TestReplayReachesOnlyFailingGroup(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	x, xID := e.event(t, "x")
	recs := []*kgo.Record{x}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		r, _ := e.event(t, k)
		recs = append(recs, r)
	}
	garbage, _ := e.event(t, "garbage")
	garbage.Value = []byte{0, 1, 2}
	recs = append(recs, garbage)
	e.produce(t, e.prod, recs...)

	groupA, groupB := testkit.UniqueName(t, "ga"), testkit.UniqueName(t, "gb")
	var fixed atomic.Bool
	var mu sync.Mutex
	xAttempts := []int{}
	gA := e.run(t, consumers.Config{Group: groupA, RetryDelays: fastDelays, Handler: handler(groupA, func(ev *consumers.Event) error {
		if ev.ID != xID {
			return nil
		}
		mu.Lock()
		xAttempts = append(xAttempts, ev.Attempt)
		mu.Unlock()
		if !fixed.Load() {
			return consumers.Permanent(errors.New("x is not welcome yet"))
		}
		return nil
	})})
	var bCalls atomic.Int64
	gB := e.run(t, consumers.Config{Group: groupB, RetryDelays: fastDelays, Handler: func(context.Context, pgx.Tx, *consumers.Event) error {
		bCalls.Add(1)
		return nil
	}})
	testkit.WaitFor(t, 30*time.Second, "both groups done", func() bool {
		return gA.Stats().Applied == 5 && gA.Stats().DeadLettered == 2 && gB.Stats().Applied == 6 && gB.Stats().DeadLettered == 1
	})

	dls, err := deadletter.List(ctx, e.brokers, e.serde, deadletter.Filter{Group: groupA})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 {
		t.Fatalf("group A's DLT: %d records, want 2: %+v", len(dls), dls)
	}
	perm, err := deadletter.List(ctx, e.brokers, e.serde, deadletter.Filter{Group: groupA, Topic: e.topic, Class: consumers.ClassPermanent})
	if err != nil || len(perm) != 1 || perm[0].EventID != xID.String() || perm[0].Value == nil || perm[0].OriginalTopic != e.topic {
		t.Fatalf("permanent-class filter: %+v, %v", perm, err)
	}
	if !strings.Contains(perm[0].ErrorMessage, "x is not welcome yet") || perm[0].Group != groupA || perm[0].Attempt != 1 {
		t.Errorf("dead letter bookkeeping: %+v", perm[0])
	}
	dec, err := deadletter.List(ctx, e.brokers, e.serde, deadletter.Filter{Group: groupA, Class: consumers.ClassDecode})
	if err != nil || len(dec) != 1 || dec[0].DecodeError == "" || dec[0].Value != nil {
		t.Fatalf("garbage in the DLT: %+v, %v", dec, err)
	}
	if none, err := deadletter.List(ctx, e.brokers, e.serde, deadletter.Filter{Group: groupA, Since: time.Now().Add(time.Hour)}); err != nil || len(none) != 0 {
		t.Fatalf("time window: %+v, %v", none, err)
	}

	// Too often: refused, nothing produced.
	tooOften := perm[0]
	tooOften.ReplayCount = 3
	rep, err := deadletter.Replay(ctx, e.brokers, []deadletter.Record{tooOften}, deadletter.ReplayOptions{})
	if err != nil || len(rep.Replayed) != 0 || len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Reason, deadletter.ErrReplayedTooOften.Error()) {
		t.Fatalf("replay over the limit: %+v, %v", rep, err)
	}
	// Not read from a DLT: refused.
	if rep, err := deadletter.Replay(ctx, e.brokers, []deadletter.Record{{Group: groupA, OriginalTopic: e.topic}}, deadletter.ReplayOptions{}); err != nil || len(rep.Refused) != 1 {
		t.Fatalf("replay of a made-up record: %+v, %v", rep, err)
	}

	fixed.Store(true)
	rep, err = deadletter.Replay(ctx, e.brokers, perm, deadletter.ReplayOptions{Rate: 50})
	if err != nil || len(rep.Replayed) != 1 || len(rep.Refused) != 0 {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	testkit.WaitFor(t, 30*time.Second, "x applied by group A", func() bool {
		return e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1`, xID) == 1
	})
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, xID); a != 1 {
		t.Errorf("x applied at attempt %d, want 1 (retry.1)", a)
	}
	// B has its own retry topics and none of its records moved: nothing
	// for it to see. Its counters are where they were.
	if n := bCalls.Load(); n != 6 {
		t.Errorf("group B handled %d events, want 6 (it must not see the replay)", n)
	}
	if st := gB.Stats(); st.Duplicates != 0 || st.Applied != 6 {
		t.Errorf("group B stats %+v", st)
	}
	bDLT, err := deadletter.List(ctx, e.brokers, e.serde, deadletter.Filter{Group: groupB})
	if err != nil || len(bDLT) != 1 || bDLT[0].ErrorClass != consumers.ClassDecode {
		t.Errorf("group B's DLT: %+v, %v", bDLT, err)
	}
	// The replay copy carries the replay count and the first failure's
	// bookkeeping.
	h := readAll(t, e.brokers, consumers.RetryTopic(e.topic, groupA, 1), 1)[0]
	if h[headers.ReplayCount] != "1" || h[headers.EventID] != xID.String() || h[headers.Attempt] != "1" ||
		h[headers.Group] != groupA || h[headers.OriginalTopic] != e.topic || h[headers.ErrorClass] != consumers.ClassPermanent ||
		h[headers.FirstFailureAt] != perm[0].Headers[headers.FirstFailureAt] || h[headers.DueAt] == "" {
		t.Errorf("replay copy headers: %v", h)
	}
}

// Records in a DLT whose headers the group did not write (they name
// another topic or partition than the DLT they sit in, or a negative
// replay count that would slip past MaxReplays) are listed with the reason
// and never replayed.
func TestReplayRefusesForgedDeadLetters(t *testing.T) {
	e := newEnv(t, 3)
	group := testkit.UniqueName(t, "g")
	if err := e.group(t, consumers.Config{Group: group, RetryDelays: fastDelays, Handler: handler(group, nil)}).Preflight(context.Background()); err != nil {
		t.Fatal(err) // creates the group's retry topics and DLT
	}
	dlt := consumers.DLTTopic(e.topic, group)
	mk := func(key string, kv ...string) *kgo.Record {
		r, _ := e.event(t, key)
		d := deadRecord(dlt, 1, r.Value, kv...)
		d.Key, d.Headers = r.Key, append(r.Headers, d.Headers...)
		return d
	}
	recs := []*kgo.Record{
		mk("other-topic", headers.Group, group, headers.OriginalTopic, "victim", headers.OriginalPartition, "1"),
		mk("other-partition", headers.Group, group, headers.OriginalTopic, e.topic, headers.OriginalPartition, "2"),
		mk("negative-count", headers.Group, group, headers.OriginalTopic, e.topic, headers.OriginalPartition, "1",
			headers.ReplayCount, "-1000000"),
	}
	e.produce(t, testkit.Client(t, e.brokers, kgo.RecordPartitioner(kgo.ManualPartitioner())), recs...)
	dls, err := deadletter.List(context.Background(), e.brokers, e.serde, deadletter.Filter{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 3 {
		t.Fatalf("listed %d dead letters, want 3", len(dls))
	}
	for _, d := range dls {
		if d.Untrusted == "" {
			t.Errorf("%s (key %s) listed as trusted", d.Position, d.Key)
		}
	}
	rep, err := deadletter.Replay(context.Background(), e.brokers, dls, deadletter.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Replayed) != 0 || len(rep.Refused) != 3 {
		t.Fatalf("replayed %v, refused %v: want all 3 refused", rep.Replayed, rep.Refused)
	}
	for _, r := range rep.Refused {
		if !strings.Contains(r.Reason, "not written by the group") {
			t.Errorf("refusal of %s: %q", r.Position, r.Reason)
		}
	}
}

// countingSource counts the schema ids a Serde asks the registry for; it
// knows none of them.
type countingSource struct{ asked atomic.Int64 }

func (c *countingSource) SchemaByID(context.Context, int) (sr.Schema, error) {
	c.asked.Add(1)
	return sr.Schema{}, errors.New("no registry here")
}

// Scan with Positions (`eventline dlt show`) reads only the named
// partitions up to the named offsets, and decodes only the records it
// passes on: one registry question for one record shown, where the whole
// scan asks one per record (each has its own schema id). `dlt show` used
// to decode every record of every DLT before printing one.
func TestScanDecodesOnlyWhatItShows(t *testing.T) {
	brokers := testkit.Kafka(t)
	group := testkit.UniqueName(t, "g")
	dlt := consumers.DLTTopic("orders", group)
	cl := testkit.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, 1, nil, dlt); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 40 {
		p := int32(i % 2)
		recs = append(recs, deadRecord(dlt, p, schemas.AppendHeader(nil, 1000+i), headers.Group, group, headers.OriginalTopic, "orders",
			headers.OriginalPartition, strconv.Itoa(int(p))))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	src := &countingSource{}
	serde := schemas.NewSerde(src)
	want := deadletter.Position{Topic: dlt, Partition: 1, Offset: 7}
	var got []deadletter.Record
	if err := deadletter.Scan(ctx, brokers, serde, deadletter.Filter{Positions: []deadletter.Position{want}}, func(d deadletter.Record) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Position != want || got[0].DecodeError == "" {
		t.Fatalf("Scan at %s passed %+v", want, got)
	}
	if n := src.asked.Load(); n != 1 {
		t.Errorf("showing one dead letter asked the registry %d times, want 1", n)
	}
	src.asked.Store(0)
	if err := deadletter.Scan(ctx, brokers, serde, deadletter.Filter{Group: group}, func(deadletter.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := src.asked.Load(); n != 40 {
		t.Errorf("scanning the whole DLT asked the registry %d times, want 40", n)
	}
}

// Scan passes dead letters one at a time, in offset order per
// partition, so listing a DLT larger than memory works: scanning 94 MiB of
// dead letters grows the live heap by a fraction of that (List, which
// keeps them, grows it by all of it). It stops at fn's first error and
// after Limit matches.
func TestScanStreamsInBoundedMemory(t *testing.T) {
	brokers := testkit.Kafka(t)
	group := testkit.UniqueName(t, "g")
	dlt := consumers.DLTTopic("orders", group)
	adm := kadm.NewClient(testkit.Client(t, brokers))
	if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, dlt); err != nil {
		t.Fatal(err)
	}
	const n, size = 6000, 16 << 10
	cl := testkit.Client(t, brokers, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	for i := range n {
		value := make([]byte, size)
		rand.Read(value) // incompressible: fetches are bounded in compressed bytes
		cl.Produce(context.Background(), &kgo.Record{Topic: dlt, Value: value, Headers: []kgo.RecordHeader{
			{Key: headers.Group, Value: []byte(group)}, {Key: headers.OriginalTopic, Value: []byte("orders")},
			{Key: headers.OriginalPartition, Value: []byte("0")}, {Key: headers.OriginalOffset, Value: []byte(strconv.Itoa(i))},
			{Key: headers.ErrorClass, Value: []byte(consumers.ClassPermanent)},
		}}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	live := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := live()
	var peak uint64
	seen, last := 0, map[int32]int64{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := deadletter.Scan(ctx, brokers, nil, deadletter.Filter{Group: group}, func(d deadletter.Record) error {
		if prev, ok := last[d.Position.Partition]; ok && d.Position.Offset <= prev {
			t.Errorf("partition %d: offset %d after %d", d.Position.Partition, d.Position.Offset, prev)
		}
		last[d.Position.Partition] = d.Position.Offset
		if seen++; seen%500 == 0 {
			peak = max(peak, live())
		}
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("scanned %d of %d: %v", seen, n, err)
	}
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %d MiB while scanning %d MiB of dead letters", grew>>20, n*size>>20)
	if grew > n*size/2 {
		t.Errorf("the live heap grew by %d MiB scanning %d MiB: not streamed", grew>>20, n*size>>20)
	}
	// The instrument sees holding: List keeps every record.
	before := live()
	all, err := deadletter.List(ctx, brokers, nil, deadletter.Filter{Group: group})
	held := int64(live()) - int64(before)
	if err != nil || len(all) != n || held < n*size*3/4 {
		t.Errorf("List: %d records, live heap +%d MiB (want all %d, about +%d MiB): %v", len(all), held>>20, n, n*size>>20, err)
	}
	runtime.KeepAlive(all)

	stop := errors.New("enough")
	calls := 0
	if err := deadletter.Scan(ctx, brokers, nil, deadletter.Filter{Group: group}, func(deadletter.Record) error {
		if calls++; calls == 10 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) || calls != 10 {
		t.Errorf("fn's error: Scan returned %v after %d calls, want it after 10", err, calls)
	}
	calls = 0
	if err := deadletter.Scan(ctx, brokers, nil, deadletter.Filter{Group: group, Limit: 7}, func(deadletter.Record) error {
		calls++
		return nil
	}); err != nil || calls != 7 {
		t.Errorf("Limit 7: %d calls, %v", calls, err)
	}
}
