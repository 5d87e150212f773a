package consumers_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testkit"
)

// The autoscaling signal counts what another member could work on: source
// records and retry records whose due time has come, not retry records
// waiting for a delay (an extra member cannot process them sooner).
//
// Before the group runs: 5 source records and 2 retry records already due
// (copies whose delay ran out while no member ran) are all scaling lag.
// Then the group applies them, 2 of the source records fail into a retry
// step of an hour, and while that delay runs the lag is 2 waiting and 0 to
// scale on: the metric a Kafka-lag autoscaler would read counts 2.
func TestLagCountsWaitingRetriesApart(t *testing.T) {
	e := newGroupEnv(t, 3)
	group := testkit.UniqueName(t, "g")
	failing := errors.New("not yet")
	cfg := consumers.Config{
		Group: group, RetryDelays: []time.Duration{time.Hour},
		Handler: recordingHandler(group, func(ev *consumers.Event) error {
			if strings.HasPrefix(string(ev.Key), "fail") && ev.Attempt == 0 {
				return failing
			}
			return nil
		}),
	}
	// New and Preflight (the retry and DLT topics) without running.
	idle := cfg
	idle.Topics, idle.Brokers, idle.DB, idle.Serde, idle.CreateTopics, idle.KafkaOpts = []string{e.topic}, e.brokers, e.db, e.serde, true, e.opts
	g, err := consumers.New(idle)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := g.Preflight(ctx); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, k := range []string{"ok-1", "ok-2", "ok-3", "fail-1", "fail-2"} {
		r, _ := e.event(t, k)
		recs = append(recs, r)
	}
	retry1 := consumers.RetryTopic(e.topic, group, 1)
	longAgo := time.Now().Add(-2 * time.Hour)
	for i, k := range []string{"due-1", "due-2"} {
		r, _ := e.event(t, k)
		r.Topic, r.Partition, r.Timestamp = retry1, int32(i), longAgo
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: headers.Attempt, Value: []byte("1")},
			kgo.RecordHeader{Key: headers.DueAt, Value: []byte(strconv.FormatInt(longAgo.Add(time.Hour).UnixMilli(), 10))},
			kgo.RecordHeader{Key: headers.OriginalTopic, Value: []byte(e.topic)},
			kgo.RecordHeader{Key: headers.OriginalPartition, Value: []byte(strconv.Itoa(i))},
			kgo.RecordHeader{Key: headers.OriginalOffset, Value: []byte("1000")},
			kgo.RecordHeader{Key: headers.Group, Value: []byte(group)})
		recs = append(recs, r)
	}
	manual := testkit.Client(t, e.brokers, append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, e.opts...)...)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, r := range recs[:5] {
		r.Partition = 0
	}
	if err := manual.ProduceSync(pctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	l, err := g.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != 5 || l.RetryDue != 2 || l.RetryWaiting != 0 || l.Scaling() != 7 {
		t.Fatalf("before the group ran: lag %+v, want source 5, due 2, waiting 0 (scaling 7)", l)
	}

	running, stop := e.run(t, cfg)
	defer stop()
	testkit.WaitFor(t, 60*time.Second, "5 applied, 2 in the hour-long retry step, offsets committed", func() bool {
		l, err = running.Lag(ctx)
		return err == nil && e.count(t, `SELECT count(*) FROM applied`) == 5 && l.Source == 0 && l.RetryDue == 0 && l.RetryWaiting == 2
	})
	if l.Scaling() != 0 || l.SourceByTopic[e.topic] != 0 {
		t.Errorf("while the delay runs: lag %+v, scaling %d, want 0", l, l.Scaling())
	}
	if st := running.Stats(); st.Retried != 2 {
		t.Errorf("retried %d, want 2", st.Retried)
	}
}
