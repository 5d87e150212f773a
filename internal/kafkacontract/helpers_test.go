package kafkacontract_test

import (
	"context"
	"errors"
	"hash/crc32"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventline/eventline/internal/devbroker"
	"github.com/eventline/eventline/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// broker is the broker a test runs on: Apache Kafka when
// EVENTLINE_TEST_KAFKA is set, else an in-process kfake cluster of the
// test's own (started as testkit.Kafka starts one, but kept so a test can
// ask kfake to compact).
type broker struct {
	name  string
	seeds []string
	raw   *kgo.Client // admin and hand-made requests
	adm   *kadm.Client
	kfake *devbroker.Broker // nil on Apache Kafka
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	b := &broker{name: "Apache Kafka"}
	if testkit.RealKafka() {
		b.seeds = testkit.Kafka(t)
	} else {
		c, err := devbroker.New(devbroker.Options{}, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
		if err != nil {
			t.Fatalf("starting kfake: %v", err)
		}
		t.Cleanup(c.Close)
		b.name, b.seeds, b.kfake = "kfake", c.ListenAddrs(), c
	}
	b.raw = testkit.Client(t, b.seeds)
	b.adm = kadm.NewClient(b.raw)
	return b
}

// real reports whether b is Apache Kafka.
func (b *broker) real() bool { return b.kfake == nil }

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// compactedTopic creates a single-partition topic with cleanup.policy
// compact, as the relay's position topic.
func (b *broker) compactedTopic(t *testing.T) string {
	t.Helper()
	name := testkit.UniqueName(t, "pos")
	ctx := testContext(t, 30*time.Second)
	compact := "compact"
	resp, err := b.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	testkit.WaitFor(t, 30*time.Second, "topic "+name+" in the metadata", func() bool {
		td, err := b.adm.ListTopics(ctx, name)
		return err == nil && td.Has(name) && td[name].Err == nil && len(td[name].Partitions) == 1 && td[name].Partitions[0].Leader >= 0
	})
	return name
}

// txnClient is a transactional producer with transactional.id txid that
// writes each record to the partition it names.
func (b *broker) txnClient(t *testing.T, txid string, timeout time.Duration) *kgo.Client {
	t.Helper()
	return testkit.Client(t, b.seeds, kgo.TransactionalID(txid), kgo.TransactionTimeout(timeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

func rec(topic string, partition int32, key, value string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: partition, Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

// produceAll produces recs in cl's open transaction and waits for them.
func produceAll(t *testing.T, ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// commitTx runs one transaction of recs on cl and commits it.
func commitTx(t *testing.T, ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin: %v", err)
	}
	produceAll(t, ctx, cl, recs...)
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// offsets returns each partition's last stable offset (what
// ListCommittedOffsets answers: the end of what read_committed may read)
// and its end offset (high watermark).
func (b *broker) offsets(t *testing.T, topic string) (lso, end map[int32]int64) {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	c, err := b.adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("listing committed offsets of %s: %v", topic, err)
	}
	e, err := b.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	lso, end = map[int32]int64{}, map[int32]int64{}
	for _, o := range c[topic] {
		if o.Err != nil {
			t.Fatalf("committed offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		lso[o.Partition] = o.Offset
	}
	for _, o := range e[topic] {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		end[o.Partition] = o.Offset
	}
	return lso, end
}

// stable reports whether every partition of topics has its last stable
// offset at its end offset: no transaction is open on it and every marker
// is written.
func (b *broker) stable(t *testing.T, topics ...string) bool {
	t.Helper()
	for _, topic := range topics {
		lso, end := b.offsets(t, topic)
		for p, e := range end {
			if lso[p] != e {
				return false
			}
		}
	}
	return true
}

// requireStable fails t unless topics are stable now.
func (b *broker) requireStable(t *testing.T, what string, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		lso, end := b.offsets(t, topic)
		for p, e := range end {
			if lso[p] != e {
				t.Fatalf("%s: %s/%d has last stable offset %d, end offset %d", what, topic, p, lso[p], e)
			}
		}
	}
}

// waitStable waits until topics are stable and returns how long that took.
func (b *broker) waitStable(t *testing.T, limit time.Duration, what string, topics ...string) time.Duration {
	t.Helper()
	start := time.Now()
	testkit.WaitFor(t, limit, what, func() bool { return b.stable(t, topics...) })
	return time.Since(start)
}

// readCommitted reads partition of topic from offset from up to (not
// including) offset to, read_committed and keeping control records, as
// the relay reads its position: every record up to the last stable offset,
// the commit and abort markers included, aborted records excluded.
func (b *broker) readCommitted(t *testing.T, topic string, partition int32, from, to int64) []*kgo.Record {
	t.Helper()
	if from >= to {
		return nil
	}
	cl := testkit.Client(t, b.seeds,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	defer cl.Close()
	ctx := testContext(t, 30*time.Second)
	var out []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s/%d [%d, %d) read_committed: got only %s", topic, partition, from, to, describe(out))
		}
		for _, e := range fs.Errors() {
			t.Fatalf("reading %s/%d: %v", topic, partition, e.Err)
		}
		for _, r := range fs.Records() {
			if r.Offset >= to {
				return out
			}
			out = append(out, r)
			if r.Offset == to-1 {
				return out
			}
		}
	}
}

// committedValues reads every partition of topic read_committed up to its
// last stable offset and returns the data records' values, partition by
// partition in offset order.
func (b *broker) committedValues(t *testing.T, topic string) []string {
	t.Helper()
	lso, _ := b.offsets(t, topic)
	var parts []int32
	for p := range lso {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	var vals []string
	for _, p := range parts {
		for _, r := range b.readCommitted(t, topic, p, 0, lso[p]) {
			if !r.Attrs.IsControl() {
				vals = append(vals, string(r.Value))
			}
		}
	}
	return vals
}

// describe lists records as offset:value, control records as offset:marker.
func describe(recs []*kgo.Record) string {
	s := "["
	for i, r := range recs {
		if i > 0 {
			s += " "
		}
		if r.Attrs.IsControl() {
			s += formatOffset(r.Offset) + ":" + marker(r)
		} else {
			s += formatOffset(r.Offset) + ":" + string(r.Value)
		}
	}
	return s + "]"
}

func formatOffset(o int64) string { return strconv.FormatInt(o, 10) }

// marker names a control record: COMMIT or ABORT.
func marker(r *kgo.Record) string {
	var k kmsg.ControlRecordKey
	if err := k.ReadFrom(r.Key); err != nil {
		return "control?"
	}
	switch k.Type {
	case kmsg.ControlRecordKeyTypeCommit:
		return "COMMIT"
	case kmsg.ControlRecordKeyTypeAbort:
		return "ABORT"
	}
	return "control?"
}

// txnState is the transactional id's state as DescribeTransactions
// answers it (Ongoing, Empty, CompleteAbort, ...) and its producer epoch.
func (b *broker) txnState(t *testing.T, txid string) (string, int16) {
	t.Helper()
	ds, err := b.adm.DescribeTransactions(testContext(t, 30*time.Second), txid)
	if err != nil {
		t.Fatalf("describing transaction %s: %v", txid, err)
	}
	d, ok := ds[txid]
	if !ok || d.Err != nil {
		t.Fatalf("describing transaction %s: %v", txid, d.Err)
	}
	return d.State, d.ProducerEpoch
}

// answer names a Kafka error code as kerr does ("NONE" for 0).
func answer(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if e, ok := kerr.ErrorForCode(code).(*kerr.Error); ok {
		return e.Message
	}
	return kerr.ErrorForCode(code).Error()
}

// errAnswer is answer for an error a client call returned.
func errAnswer(err error) string {
	if err == nil {
		return "NONE"
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return ke.Message
	}
	return err.Error()
}

// expect checks what a broker answered: Apache Kafka must give kafka; kfake
// may give kafka too, or one of kfakeAlso (its own documented answers, see
// docs/upstream/kfake-transactions.md). It logs which.
func expect(t *testing.T, b *broker, what string, got int16, kafka int16, kfakeAlso ...int16) {
	t.Helper()
	switch {
	case got == kafka:
		t.Logf("%s: %s answers %s", what, b.name, answer(got))
	case !b.real() && slices.Contains(kfakeAlso, got):
		t.Logf("%s: %s answers %s (Apache Kafka: %s)", what, b.name, answer(got), answer(kafka))
	default:
		t.Errorf("%s: %s answered %s, want %s", what, b.name, answer(got), answer(kafka))
	}
}

// code is the Kafka error code err carries (0 for nil, -1 for an error that
// is not a Kafka error).
func code(err error) int16 {
	if err == nil {
		return 0
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return ke.Code
	}
	return -1
}

// The hand-made requests below show what the broker answers, without
// kgo's retries and bookkeeping in between.

// rawInit sends InitProducerID for txid (pid and epoch -1: a new producer)
// until it is not answered CONCURRENT_TRANSACTIONS, as clients retry it.
// It returns the last answer and how many CONCURRENT_TRANSACTIONS came
// before it.
func (b *broker) rawInit(t *testing.T, txid string, timeout time.Duration) (resp *kmsg.InitProducerIDResponse, concurrent int) {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &txid
		req.TransactionTimeoutMillis = int32(timeout / time.Millisecond)
		req.ProducerID, req.ProducerEpoch = -1, -1
		r, err := b.raw.Request(ctx, req)
		if err != nil {
			t.Fatalf("InitProducerID: %v", err)
		}
		resp = r.(*kmsg.InitProducerIDResponse)
		if resp.ErrorCode != kerr.ConcurrentTransactions.Code {
			return resp, concurrent
		}
		concurrent++
		time.Sleep(20 * time.Millisecond) // kgo's transaction backoff is 20 ms too
	}
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// rawProduce writes one transactional record to topic/partition as
// producer pid/epoch with sequence seq (Produce v12+: the partition joins
// the transaction implicitly, KIP-890) and returns the partition's error
// code.
func (b *broker) rawProduce(t *testing.T, txid, topic string, partition int32, pid int64, epoch int16, seq int32, value string) int16 {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	td, err := b.adm.ListTopics(ctx, topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("metadata of %s: %v %v", topic, err, td[topic].Err)
	}
	leader := td[topic].Partitions[partition].Leader

	r := kmsg.Record{Value: []byte(value)}
	r.Length = int32(len(r.AppendTo(nil)) - 1) // a one-byte length: short values only
	now := time.Now().UnixMilli()
	batch := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, Attributes: 0x10, // transactional
		FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq,
		NumRecords: 1, Records: r.AppendTo(nil),
	}
	batch.Length = int32(len(batch.AppendTo(nil)) - 12)
	enc := batch.AppendTo(nil)
	batch.CRC = int32(crc32.Checksum(enc[21:], crc32c))

	req := kmsg.NewPtrProduceRequest()
	req.TransactionID = &txid
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, td[topic].ID
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch.AppendTo(nil)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	for {
		resp, err := b.raw.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			t.Fatalf("Produce: %v", err)
		}
		pr := resp.(*kmsg.ProduceResponse)
		if pr.Version < 12 {
			t.Fatalf("Produce v%d: the broker does not add partitions implicitly (KIP-890), these tests assume it does", pr.Version)
		}
		// A topic Kafka has just created can be in the metadata before
		// its leader serves it: retry as clients do (nothing was
		// written).
		c := pr.Topics[0].Partitions[0].ErrorCode
		if (c == kerr.NotLeaderForPartition.Code || c == kerr.UnknownTopicOrPartition.Code) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return c
	}
}

// rawAddPartition sends AddPartitionsToTxn for topic/partition as
// producer pid/epoch and returns the partition's error code.
func (b *broker) rawAddPartition(t *testing.T, txid, topic string, partition int32, pid int64, epoch int16) int16 {
	t.Helper()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.TransactionalID = txid
	req.ProducerID, req.ProducerEpoch = pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{partition}
	req.Topics = append(req.Topics, rt)
	r, err := b.raw.Request(testContext(t, 30*time.Second), req)
	if err != nil {
		t.Fatalf("AddPartitionsToTxn: %v", err)
	}
	resp := r.(*kmsg.AddPartitionsToTxnResponse)
	if resp.ErrorCode != 0 {
		return resp.ErrorCode
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			return rp.ErrorCode
		}
	}
	t.Fatalf("AddPartitionsToTxn: no partition in the answer %+v", resp)
	return 0
}

// rawEnd sends EndTxn as producer pid/epoch.
func (b *broker) rawEnd(t *testing.T, txid string, pid int64, epoch int16, commit bool) *kmsg.EndTxnResponse {
	t.Helper()
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID = txid
	req.ProducerID, req.ProducerEpoch = pid, epoch
	req.Commit = commit
	r, err := b.raw.Request(testContext(t, 30*time.Second), req)
	if err != nil {
		t.Fatalf("EndTxn: %v", err)
	}
	resp := r.(*kmsg.EndTxnResponse)
	if resp.Version < 5 {
		t.Fatalf("EndTxn v%d: the broker does not bump epochs per transaction (KIP-890), these tests assume it does", resp.Version)
	}
	return resp
}
