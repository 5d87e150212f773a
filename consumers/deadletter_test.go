package consumers_test

import (
	"context"
	"errors"
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
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

// A replay from group A's DLT reaches group A only: A applies the event
// once, from retry.1; group B, which applied everything the first time,
// never sees anything again. A record replayed too often is refused.
func TestReplayReachesOnlyFailingGroup(t *testing.T) {
	e := newGroupEnv(t, 2)
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
	e.produce(t, recs...)

	groupA, groupB := testkit.UniqueName(t, "ga"), testkit.UniqueName(t, "gb")
	var fixed atomic.Bool
	var mu sync.Mutex
	xAttempts := []int{}
	gA, _ := e.run(t, consumers.Config{Group: groupA, RetryDelays: fastDelays, Handler: recordingHandler(groupA, func(ev *consumers.Event) error {
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
	gB, _ := e.run(t, consumers.Config{Group: groupB, RetryDelays: fastDelays, Handler: func(context.Context, pgx.Tx, *consumers.Event) error {
		bCalls.Add(1)
		return nil
	}})
	testkit.WaitFor(t, 30*time.Second, "both groups done", func() bool {
		return gA.Stats().Applied == 5 && gA.Stats().DeadLettered == 2 && gB.Stats().Applied == 6 && gB.Stats().DeadLettered == 1
	})

	dls, err := consumers.ListDLT(ctx, e.brokers, e.serde, consumers.DLTFilter{Group: groupA})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 {
		t.Fatalf("group A's DLT: %d records, want 2: %+v", len(dls), dls)
	}
	perm, err := consumers.ListDLT(ctx, e.brokers, e.serde, consumers.DLTFilter{Group: groupA, Topic: e.topic, Class: consumers.ClassPermanent})
	if err != nil || len(perm) != 1 || perm[0].EventID != xID.String() || perm[0].Value == nil || perm[0].OriginalTopic != e.topic {
		t.Fatalf("permanent-class filter: %+v, %v", perm, err)
	}
	if !strings.Contains(perm[0].ErrorMessage, "x is not welcome yet") || perm[0].Group != groupA || perm[0].Attempt != 1 {
		t.Errorf("dead letter bookkeeping: %+v", perm[0])
	}
	dec, err := consumers.ListDLT(ctx, e.brokers, e.serde, consumers.DLTFilter{Group: groupA, Class: consumers.ClassDecode})
	if err != nil || len(dec) != 1 || dec[0].DecodeError == "" || dec[0].Value != nil {
		t.Fatalf("garbage in the DLT: %+v, %v", dec, err)
	}
	if none, err := consumers.ListDLT(ctx, e.brokers, e.serde, consumers.DLTFilter{Group: groupA, Since: time.Now().Add(time.Hour)}); err != nil || len(none) != 0 {
		t.Fatalf("time window: %+v, %v", none, err)
	}

	// Too often: refused, nothing produced.
	tooOften := perm[0]
	tooOften.ReplayCount = 3
	rep, err := consumers.ReplayDLT(ctx, e.brokers, []consumers.DeadLetter{tooOften}, consumers.ReplayOptions{})
	if err != nil || len(rep.Replayed) != 0 || len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Reason, "replayed too often") {
		t.Fatalf("replay over the limit: %+v, %v", rep, err)
	}

	fixed.Store(true)
	rep, err = consumers.ReplayDLT(ctx, e.brokers, perm, consumers.ReplayOptions{Rate: 50})
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
	bDLT, err := consumers.ListDLT(ctx, e.brokers, e.serde, consumers.DLTFilter{Group: groupB})
	if err != nil || len(bDLT) != 1 || bDLT[0].ErrorClass != consumers.ClassDecode {
		t.Errorf("group B's DLT: %+v, %v", bDLT, err)
	}
	// The replay copy carries the replay count.
	copyRecs := readAll(t, e.brokers, consumers.RetryTopic(e.topic, groupA, 1), 1)
	if h := headers(copyRecs[0]); h[consumers.HeaderReplayCount] != "1" || h[consumers.HeaderEventID] != xID.String() {
		t.Errorf("replay copy headers: %v", h)
	}
}

// countingSource counts the schema ids a Serde asks the registry for; it
// knows none of them.
type countingSource struct{ asked atomic.Int64 }

func (c *countingSource) SchemaByID(context.Context, int) (sr.Schema, error) {
	c.asked.Add(1)
	return sr.Schema{}, errors.New("no registry here")
}

// ScanDLT with Positions (`eventline dlt show`) reads only the named
// partitions up to the named offsets, and decodes only the records it
// passes on: one registry question for one record shown, where the whole
// scan asks one per record (each has its own schema id). `dlt show` used
// to decode every record of every DLT before printing one.
func TestScanDLTDecodesOnlyWhatItShows(t *testing.T) {
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
		recs = append(recs, &kgo.Record{Topic: dlt, Partition: p, Value: schemas.AppendHeader(nil, 1000+i), Headers: []kgo.RecordHeader{
			{Key: consumers.HeaderGroup, Value: []byte(group)}, {Key: consumers.HeaderOriginalTopic, Value: []byte("orders")},
			{Key: consumers.HeaderOriginalPartition, Value: []byte(strconv.Itoa(int(p)))}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	src := &countingSource{}
	serde := schemas.NewSerde(src)
	want := consumers.Position{Topic: dlt, Partition: 1, Offset: 7}
	var got []consumers.DeadLetter
	if err := consumers.ScanDLT(ctx, brokers, serde, consumers.DLTFilter{Positions: []consumers.Position{want}}, func(d consumers.DeadLetter) error {
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Position != want || got[0].DecodeError == "" {
		t.Fatalf("ScanDLT at %s passed %+v", want, got)
	}
	if n := src.asked.Load(); n != 1 {
		t.Errorf("showing one dead letter asked the registry %d times, want 1", n)
	}
	src.asked.Store(0)
	if err := consumers.ScanDLT(ctx, brokers, serde, consumers.DLTFilter{Group: group}, func(consumers.DeadLetter) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := src.asked.Load(); n != 40 {
		t.Errorf("scanning the whole DLT asked the registry %d times, want 40", n)
	}
}
