package consumers_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/deadletter"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

// Source records carrying forged bookkeeping headers (a partition the topic
// does not have, a topic that does not exist, an attempt and due time, a
// first failure) are processed as the plain source records they are: the
// failing one goes to retry.1 in its own partition, once, and is applied
// from there at attempt 1; the partition keeps flowing; nothing reaches the
// DLT. Before, the forged partition stalled its partition for good and
// wrote the next copy 18 times.
func TestForgedHeadersOnSourceRecordsIgnored(t *testing.T) {
	e := newGroupEnv(t, 3)
	forge := func(r *kgo.Record, kv ...string) {
		for i := 0; i < len(kv); i += 2 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
	}
	far := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	failing, failingID := e.event(t, "forged-partition")
	forge(failing, headers.OriginalTopic, e.topic, headers.OriginalPartition, "7",
		headers.OriginalOffset, "-5", headers.Attempt, "3", headers.FirstFailureAt, "1")
	lost, _ := e.event(t, "forged-topic")
	forge(lost, headers.OriginalTopic, "no-such-topic", headers.OriginalPartition, "0", headers.OriginalOffset, "0")
	late, _ := e.event(t, "forged-due")
	forge(late, headers.Attempt, "99", headers.DueAt, far)
	recs := []*kgo.Record{failing, lost, late}
	for i := range 30 {
		r, _ := e.event(t, fmt.Sprintf("plain%d", i))
		recs = append(recs, r)
	}
	e.produce(t, recs...)
	group := testkit.UniqueName(t, "g")
	g, _ := e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, Handler: recordingHandler(group, func(ev *consumers.Event) error {
		if ev.ID == failingID && ev.Attempt == 0 {
			return errFlaky
		}
		return nil
	})})
	testkit.WaitFor(t, 30*time.Second, "every record applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == 33 })
	waitStats(t, g, "1 retried, none dead-lettered", func(st consumers.Stats) bool { return st.Retried == 1 && st.DeadLettered == 0 })
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, failingID); a != 1 {
		t.Errorf("the forged-partition record applied at attempt %d, want 1 (from retry.1)", a)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE attempt <> 0 AND key <> 'forged-partition'`); n != 0 {
		t.Errorf("%d records took their forged attempt header", n)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d records applied more than once", n)
	}
	cp := readAll(t, e.brokers, consumers.RetryTopic(e.topic, group, 1), 1)[0]
	h := headerMap(cp)
	if cp.Partition != failing.Partition || h[headers.OriginalPartition] != strconv.Itoa(int(failing.Partition)) ||
		h[headers.OriginalOffset] != strconv.FormatInt(failing.Offset, 10) || h[headers.Attempt] != "1" || h[headers.FirstFailureAt] == "1" {
		t.Errorf("retry copy in partition %d with headers %v; the source record was at partition %d offset %d", cp.Partition, h, failing.Partition, failing.Offset)
	}
}

// A copy the broker refuses for good (too large for its retry topic) goes
// to the DLT once with class undeliverable; when the DLT refuses it too it
// arrives there without its value. Nothing is written twice, and the
// partition keeps flowing behind it. (The whole produce used to be retried
// forever, writing the accepted copies again each time.)
func TestUndeliverableCopiesGoToDLTOnce(t *testing.T) {
	e := newGroupEnv(t, 1)
	group := testkit.UniqueName(t, "g")
	small := map[string]*string{"max.message.bytes": kadm.StringPtr("4000")}
	adm := kadm.NewClient(testkit.Client(t, e.brokers))
	for _, topic := range []string{consumers.RetryTopic(e.topic, group, 1), consumers.DLTTopic(e.topic, group)} {
		resp, err := adm.CreateTopic(context.Background(), 1, 1, small, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	big, bigID := e.event(t, "big")
	v, err := schemas.Encode(e.id, info.Schema, &testevents.TicketOpened{TicketID: "big", RequesterID: strings.Repeat("c", 8000), Attachments: []testevents.Attachment{},
		EstimateMinutes: 1, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	big.Value = v
	flaky, flakyID := e.event(t, "flaky")
	recs := []*kgo.Record{big, flaky}
	for i := range 10 {
		r, _ := e.event(t, fmt.Sprintf("after%d", i))
		recs = append(recs, r)
	}
	e.produce(t, recs...)
	// Apache Kafka refuses by the topics' max.message.bytes; kfake does not
	// enforce it, so the group's producer refuses by its batch limit.
	e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, KafkaOpts: []kgo.Opt{kgo.ProducerBatchMaxBytes(6000)},
		Handler: recordingHandler(group, func(ev *consumers.Event) error {
			if (ev.ID == bigID || ev.ID == flakyID) && ev.Attempt == 0 {
				return errFlaky
			}
			return nil
		})})
	testkit.WaitFor(t, 30*time.Second, "the others applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == 11 })
	dlt := readAll(t, e.brokers, consumers.DLTTopic(e.topic, group), 1)
	h := headerMap(dlt[0])
	if h[headers.EventID] != bigID.String() || h[headers.ErrorClass] != consumers.ClassUndeliverable || len(dlt[0].Value) != 0 ||
		!strings.Contains(h[headers.ErrorMessage], "value dropped") || h[headers.OriginalOffset] != strconv.FormatInt(big.Offset, 10) {
		t.Errorf("DLT record: %d-byte value, headers %v", len(dlt[0].Value), h)
	}
	ends, err := adm.ListEndOffsets(context.Background(), consumers.DLTTopic(e.topic, group), consumers.RetryTopic(e.topic, group, 1))
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(consumers.DLTTopic(e.topic, group), 0); o.Offset != 1 {
		t.Errorf("the DLT holds %d records, want 1", o.Offset)
	}
	if o, _ := ends.Lookup(consumers.RetryTopic(e.topic, group, 1), 0); o.Offset != 1 {
		t.Errorf("retry.1 holds %d records, want 1 (the flaky event's copy, once)", o.Offset)
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, flakyID); a != 1 {
		t.Errorf("the flaky event applied at attempt %d, want 1", a)
	}
}

// The matrix's memory bounds, for the whole test process (kfake in it by
// default): the live heap sampled every 5 ms (its growth), and all that the process
// allocated from producing the records to the last dead letter, which no
// sampling misses. One nested bomb decoded without the budget allocates
// 640 MB (the 167-byte array<array<null>>) and more.
const (
	matrixHeapBound  = 128 << 20 // growth over the heap at the start; 25 MiB seen on kfake with -race
	matrixAllocBound = 512 << 20 // 36 MiB seen on kfake with -race
)

// Hostile records of every kind, interleaved with good ones in one
// partition, with key order on: forged bookkeeping headers, a 900 KB
// recursive-schema bomb, nested blocks of zero-byte items (167-byte and
// 10 KB values of array<array<null>>, map<array<null>>, arrays of wide
// records: testkit.HostileValues), an unknown schema id, garbage, an empty
// value, a 4,000-byte key. Every good record is applied once (the huge-key
// one through the retry chain), every bad one ends in the DLT once with a
// reason, the partition's offsets reach its end, and the process's heap
// stays under matrixHeapBound: the recursive bomb took 1.45 GB for 1 MB
// before the decode budget, a 167-byte array<array<null>> 768 MB, a 10 KB
// one a crash loop.
func TestHostileRecordMatrix(t *testing.T) {
	e := newGroupEnv(t, 1)
	bombID := e.fx.Register(t, testkit.UniqueName(t, "bomb")+"-value",
		`{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}`)
	bomb := schemas.AppendHeader(nil, bombID)
	for range 450_000 { // 900 KB: under the producer's 1 MB batch limit
		bomb = append(bomb, 0x02, 0x02) // v = 1, next = another Node
	}
	bomb = append(bomb, 0x02, 0x00)
	raw := func(key string, value []byte) *kgo.Record {
		r, _ := e.event(t, key)
		r.Value = value
		return r
	}
	hugeKey := strings.Repeat("h", 4000)
	huge, hugeID := e.event(t, hugeKey)
	forged, _ := e.event(t, "forged")
	forged.Headers = append(forged.Headers, kgo.RecordHeader{Key: headers.OriginalPartition, Value: []byte("7")},
		kgo.RecordHeader{Key: headers.OriginalTopic, Value: []byte("no-such-topic")}, kgo.RecordHeader{Key: headers.Attempt, Value: []byte("99")})
	bad := map[int]*kgo.Record{ // after which good record
		15: raw("bomb", bomb),
		20: raw("unknown-id", schemas.AppendHeader([]byte(nil), 1<<30)),
		25: raw("garbage", []byte("not avro at all")),
		30: raw("empty", []byte{}),
	}
	badKeys := []string{"bomb", "unknown-id", "garbage", "empty"}
	for i, hv := range testkit.HostileValues() {
		id := e.fx.Register(t, testkit.UniqueName(t, fmt.Sprintf("nested%d", i))+"-value", hv.Schema)
		bad[[]int{2, 8, 12, 33, 36, 38}[i]] = raw(hv.Name, append(schemas.AppendHeader(nil, id), hv.Body...))
		badKeys = append(badKeys, hv.Name)
	}
	var recs []*kgo.Record
	good := 2 // forged and huge
	for i := range 40 {
		r, _ := e.event(t, fmt.Sprintf("good-%d", i%5))
		recs = append(recs, r)
		good++
		switch i {
		case 5:
			recs = append(recs, forged)
		case 10:
			recs = append(recs, huge)
		default:
			if b := bad[i]; b != nil {
				recs = append(recs, b)
			}
		}
	}

	var peak atomic.Uint64
	var start runtime.MemStats
	runtime.GC() // earlier tests' garbage is not the matrix's
	runtime.ReadMemStats(&start)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peak.Load() {
					peak.Store(ms.HeapAlloc)
				}
			}
		}
	}()
	e.produce(t, recs...)
	group := testkit.UniqueName(t, "g")
	g, stop := e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, KeyOrder: true, Handler: recordingHandler(group, func(ev *consumers.Event) error {
		if ev.ID == hugeID && ev.Attempt == 0 {
			return errFlaky
		}
		return nil
	})})
	testkit.WaitFor(t, 60*time.Second, "every good record applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == int64(good) })
	waitStats(t, g, fmt.Sprintf("%d dead-lettered, 1 retried", len(bad)), func(st consumers.Stats) bool { return st.DeadLettered == int64(len(bad)) && st.Retried >= 1 })
	close(stopSampling)
	<-sampled
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d records applied more than once", n)
	}
	if a := e.count(t, `SELECT attempt FROM applied WHERE event_id = $1`, hugeID); a != 1 {
		t.Errorf("the huge-key record applied at attempt %d, want 1", a)
	}
	dls, err := deadletter.List(context.Background(), e.brokers, e.serde, deadletter.Filter{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, d := range dls {
		keys[d.Key] = d.ErrorClass + ": " + d.ErrorMessage
		if d.ErrorMessage == "" || d.Untrusted != "" {
			t.Errorf("dead letter %s (key %s): message %q, untrusted %q", d.Position, d.Key, d.ErrorMessage, d.Untrusted)
		}
	}
	for _, k := range badKeys {
		if _, ok := keys[k]; !ok {
			t.Errorf("no dead letter for %s (have %v)", k, keys)
		} else if k != "bomb" && strings.Contains(k, "<") && !strings.Contains(keys[k], "decoding budget") {
			t.Errorf("%s dead-lettered for %q, want the decoding budget", k, keys[k])
		}
	}
	if len(dls) != len(bad) {
		t.Errorf("%d dead letters, want %d: %v", len(dls), len(bad), keys)
	}
	allocated := end.TotalAlloc - start.TotalAlloc
	grew := int64(peak.Load()) - int64(start.HeapAlloc)
	t.Logf("dead letters: %v; the heap grew by %d MiB at its peak, %d MiB allocated in all", keys, grew>>20, allocated>>20)
	if grew > matrixHeapBound {
		t.Errorf("the heap grew by %d MiB, over %d MiB", grew>>20, matrixHeapBound>>20)
	}
	if allocated > matrixAllocBound {
		t.Errorf("%d MiB allocated while the group worked through the matrix, over %d MiB", allocated>>20, matrixAllocBound>>20)
	}
	stop()
	adm := kadm.NewClient(testkit.Client(t, e.brokers))
	committed, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := committed.Lookup(e.topic, 0); !ok || o.At != int64(len(recs)) {
		t.Errorf("committed offset %v, want %d (the partition's end)", o.At, len(recs))
	}
}
