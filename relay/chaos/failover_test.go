package chaos_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/relay"
)

// On a three-node cluster (replication factor 3, min.insync.replicas=2,
// acks=all), the leader of a partition the relay is producing to is
// SIGKILLed while 8 writers commit, started again on its data once the relay
// has carried on without it, and made the leader again once in sync. The
// relay is neither restarted nor told: its client follows the partitions'
// new leaders and logs the failover. Every committed event is on the topic
// once (the idempotent producer's retries to the new leader add no
// duplicates), each aggregate's events in commit order. With transactions
// the topic is read committed: the transaction in flight at the kill
// commits once its records reach the new leaders (one that fails instead is
// aborted and its batch published again by the next), and nothing is
// read twice.
//
// Runs only on the cluster of make test-failover (testkit.ClusterEnv).
func TestFailoverRelayLeaderSIGKILL(t *testing.T) {
	// One variant after the other: both kill nodes of the one cluster.
	for _, v := range []variant{{mode: relay.ModePoll}, {mode: relay.ModePoll, txn: true}} {
		t.Run(v.String(), func(t *testing.T) { testFailoverRelayLeaderSIGKILL(t, v) })
	}
}

func testFailoverRelayLeaderSIGKILL(t *testing.T, v variant) {
	begin := time.Now()
	c := testkit.KafkaCluster(t)
	w := setupReplicated(t, v, testkit.Postgres(t), c.Brokers, 3)
	log, out := testkit.CapturingLogger(t)
	cfg := relay.Config{BatchSize: 200, Logger: log}
	if v.txn {
		cfg.TransactionalID = testkit.UniqueName(t, "relay")
	}
	r := w.startRelay("r", cfg)
	stopWriters, _ := w.startWriters(8, 10*time.Millisecond, 0)
	published := func() uint64 {
		select {
		case <-r.done:
			t.Fatal("the relay's Run returned during the failover")
		default:
		}
		return r.r.Stats().Published
	}

	testkit.WaitFor(t, 60*time.Second, "relay publishing", func() bool { return published() >= 1000 })
	// The relay created the topic from eventline.yaml: three replicas.
	p0, ok := c.Partition(w.topic, 0)
	if !ok || len(p0.Replicas) != 3 || len(p0.ISR) != 3 {
		t.Fatalf("partition 0 of %s: %+v (ok %v), want 3 replicas in sync", w.topic, p0, ok)
	}
	victim := p0.Leader
	if victim != p0.Replicas[0] {
		t.Fatalf("partition 0 of %s is led by %d, not by its preferred replica %d", w.topic, victim, p0.Replicas[0])
	}
	var coord int32 = -1
	if v.txn {
		checkTxnState(t, c)
		testkit.WaitFor(t, 30*time.Second, "the relay's transaction coordinator", func() bool {
			var ok bool
			coord, ok = c.TxnCoordinator(cfg.TransactionalID)
			return ok
		})
	}
	atKill := published()
	killAt := time.Now()
	c.Kill(t, victim)
	newLeader := c.Leader(t, w.topic, 0, victim, 60*time.Second)
	elected := time.Since(killAt)
	// The relay carries on while the node is down: with 2 of 3 replicas
	// in sync, acks=all writes still meet min.insync.replicas.
	testkit.WaitFor(t, 60*time.Second, "relay publishing with the node down", func() bool { return published() >= atKill+1000 })
	resumed := time.Since(killAt)
	// The client logs the leader's move; it logs the dead broker as
	// unreachable only if it dials it again (a request in flight at the
	// kill, a metadata request), which depends on timing: reported below,
	// not required.
	testkit.WaitFor(t, 30*time.Second, "the relay logging the failover", func() bool {
		return testkit.HasLine(out.String(), `msg="kafka partition leader moved"`, "client=relay", "topic="+w.topic+" ", "partition=0 ",
			fmt.Sprintf("from=%d to=%d ", victim, newLeader))
	})
	unreachable := testkit.HasLine(out.String(), `msg="kafka broker unreachable; retrying"`, "client=relay", fmt.Sprintf("broker=%d ", victim))

	startAt := time.Now()
	c.Start(t, victim)
	for p := range int32(partitions) {
		c.WaitInSync(t, w.topic, p, 90*time.Second)
	}
	back := time.Since(startAt)
	// The node back leads again (Kafka would move it back after 5
	// minutes): the relay follows it with the data it kept.
	c.ElectPreferred(t, w.topic, partitions, 60*time.Second)
	testkit.WaitFor(t, 60*time.Second, "the relay following the leader back", func() bool {
		return testkit.HasLine(out.String(), `msg="kafka partition leader moved"`, "client=relay", "topic="+w.topic+" ", "partition=0 ",
			fmt.Sprintf("from=%d to=%d ", newLeader, victim))
	})
	atBack := published()
	testkit.WaitFor(t, 60*time.Second, "relay publishing after the node's return", func() bool { return published() >= atBack+500 })
	stopWriters()
	backlog, drainAt := w.outboxCount(), time.Now()
	t.Logf("%d outbox rows when the writers stopped", backlog)
	w.drained(60 * time.Second)
	drain := time.Since(drainAt)
	published() // still running
	r.stop()

	o := w.verify(w.readTopic())
	if o.duplicates != 0 {
		t.Errorf("%d duplicate records: the idempotent producer's retries should add none", o.duplicates)
	}
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions with the database up: %v", failed+uncertain, err)
	}
	txn := ""
	if v.txn {
		txn = fmt.Sprintf("; transaction coordinator %d (the killed node: %v); %s", coord, coord == victim, w.txnReport(r, o, cfg.TransactionalID, out.String()))
	}
	t.Logf("relay failover (%s): %s; node %d (leader of partition 0) SIGKILLed after %d published: new leader %d elected %s later, "+
		"%d more published %s after the kill; dead node logged unreachable: %v; node back and every replica in sync %s after its start, then leader again; "+
		"%d outbox rows drained %s after the writers stopped%s; relay log: %s; test %s",
		v, o, victim, atKill, newLeader, duration(elected), 1000, duration(resumed), unreachable, duration(back), backlog, duration(drain), txn,
		strings.Join(grepLines(out.String(), "msg=\"kafka "), " | "), duration(time.Since(begin)))
}

// grepLines returns the lines of s containing sub, without their time and
// level, for the report.
func grepLines(s, sub string) []string {
	var lines []string
	for line := range strings.Lines(s) {
		if i := strings.Index(line, sub); i >= 0 {
			lines = append(lines, strings.TrimSpace(line[i:]))
		}
	}
	return lines
}

// On the three-node cluster, in both modes, the transaction coordinator of a transactional
// relay — the leader of its transactional.id's partition of
// __transaction_state, which kafka.sh replicates like the topics (3
// replicas, min ISR 2) — is SIGKILLed while 8 writers commit. Every batch
// is a transaction the coordinator ends, so the relay commits nothing
// until another replica of that partition leads and has loaded the
// transactions' state. The transaction in flight either commits there (the
// client finds the new coordinator and ends it: its state was replicated)
// or, when its commit failed at the dead one, is settled by the relay's
// next takeover: the fencing aborts it unless it committed, the position
// topic says which, and an aborted batch is published again. The node is
// started again on its data and made the coordinator again once in sync:
// the relay follows it back. The topic, read committed, holds every
// committed event once, each aggregate's events in commit order.
//
// The coordinator is also the preferred leader of some of the topic's
// partitions (each node leads two of six): those move too, as in
// TestFailoverRelayLeaderSIGKILL.
//
// Runs only on the cluster of make test-failover (testkit.ClusterEnv).
func TestFailoverTransactionCoordinatorSIGKILL(t *testing.T) {
	for _, v := range []variant{{mode: relay.ModePoll, txn: true}, {mode: relay.ModeLogical, txn: true}} {
		t.Run(v.String(), func(t *testing.T) { testFailoverTransactionCoordinatorSIGKILL(t, v) })
	}
}

func testFailoverTransactionCoordinatorSIGKILL(t *testing.T, v variant) {
	begin := time.Now()
	c := testkit.KafkaCluster(t)
	w := setupReplicated(t, v, testkit.Postgres(t), c.Brokers, 3)
	log, out := testkit.CapturingLogger(t)
	txnID := testkit.UniqueName(t, "relay")
	// The relay's name for its position topic (relay.positionTopic): the
	// id is made of characters a topic name allows.
	posTopic := "_" + txnID + "-position"
	r := w.startRelay("r", relay.Config{BatchSize: 200, Logger: log, TransactionalID: txnID})
	stopWriters, _ := w.startWriters(8, 10*time.Millisecond, 0)
	stats := func() relay.Stats {
		select {
		case <-r.done:
			t.Fatal("the relay's Run returned during the failover")
		default:
		}
		return r.r.Stats()
	}
	failedBatches := func() int { return testkit.CountLines(out.String(), `msg="relay: batch failed; retrying"`) }

	testkit.WaitFor(t, 60*time.Second, "relay publishing", func() bool { return stats().Published >= 1000 })
	checkTxnState(t, c)
	// From the preferred leaders: an earlier test's kill may have moved
	// them, and the node killed must be its partition's preferred replica
	// to coordinate again once back.
	c.ElectPreferred(t, txnStateTopic, txnStatePartitions, 60*time.Second)
	part := txnStatePartition(txnID)
	sp, ok := c.Partition(txnStateTopic, part)
	if !ok || len(sp.Replicas) != 3 || sp.Leader != sp.Replicas[0] {
		t.Fatalf("%s/%d: %+v (ok %v), want 3 replicas led by the first", txnStateTopic, part, sp, ok)
	}
	victim := sp.Leader
	testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("the cluster naming node %d, leader of %s/%d, the coordinator of %s", victim, txnStateTopic, part, txnID), func() bool {
		n, ok := c.TxnCoordinator(txnID)
		return ok && n == victim
	})
	// What else the coordinator leads, for the report.
	var led []string
	for p := range int32(partitions) {
		if pd, ok := c.Partition(w.topic, p); ok && pd.Leader == victim {
			led = append(led, fmt.Sprintf("%s/%d", w.topic, p))
		}
	}
	pp, ok := c.Partition(posTopic, 0)
	if !ok || len(pp.Replicas) != 3 {
		t.Fatalf("position topic %s: %+v (ok %v), want 3 replicas", posTopic, pp, ok)
	}
	if pp.Leader == victim {
		led = append(led, posTopic+"/0")
	}

	at := stats()
	failedBefore := failedBatches()
	killAt := time.Now()
	c.Kill(t, victim)
	newLeader := c.Leader(t, txnStateTopic, part, victim, 60*time.Second)
	elected := time.Since(killAt)
	testkit.WaitFor(t, 60*time.Second, "the cluster naming the new coordinator", func() bool {
		n, ok := c.TxnCoordinator(txnID)
		return ok && n == newLeader
	})
	found := time.Since(killAt)
	// Two batches more: the first may be one whose commit the dead
	// coordinator had completed before the kill.
	testkit.WaitFor(t, 60*time.Second, "a batch committed by the new coordinator", func() bool { return stats().Batches >= at.Batches+2 })
	firstBatch := time.Since(killAt)
	testkit.WaitFor(t, 60*time.Second, "relay publishing with the coordinator down", func() bool { return stats().Published >= at.Published+1000 })
	resumed := time.Since(killAt)
	failedDown := failedBatches() - failedBefore

	startAt := time.Now()
	c.Start(t, victim)
	for p := range int32(partitions) {
		c.WaitInSync(t, w.topic, p, 90*time.Second)
	}
	c.WaitInSync(t, posTopic, 0, 90*time.Second)
	for p := range int32(txnStatePartitions) {
		c.WaitInSync(t, txnStateTopic, p, 90*time.Second)
	}
	back := time.Since(startAt)
	// The node back coordinates and leads again: a clean move this time
	// (the old coordinator answers NOT_COORDINATOR, the client asks for
	// the new one).
	c.ElectPreferred(t, txnStateTopic, txnStatePartitions, 60*time.Second)
	c.ElectPreferred(t, w.topic, partitions, 60*time.Second)
	testkit.WaitFor(t, 30*time.Second, "the cluster naming the node back as coordinator", func() bool {
		n, ok := c.TxnCoordinator(txnID)
		return ok && n == victim
	})
	atBack := stats().Published
	testkit.WaitFor(t, 60*time.Second, "relay publishing after the coordinator's return", func() bool { return stats().Published >= atBack+500 })
	stopWriters()
	backlog, drainAt := w.outboxCount(), time.Now()
	t.Logf("%d outbox rows when the writers stopped", backlog)
	w.drained(60 * time.Second)
	drain := time.Since(drainAt)
	stats() // still running
	r.stop()

	o := w.verify(w.readTopic())
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions with the database up: %v", failed+uncertain, err)
	}
	t.Logf("transaction coordinator failover: %s; node %d (coordinator of %s: leader of %s/%d; also leading %s) SIGKILLed after %d published in %d batches: "+
		"new leader %d elected %s later, named coordinator %s, first batch committed %s and %d more published %s after the kill (%d failed batches logged meanwhile); "+
		"node back and every replica in sync %s after its start, then coordinator and leader again; %d outbox rows drained %s after the writers stopped; %s; relay log: %s; test %s",
		o, victim, txnID, txnStateTopic, part, strings.Join(led, ", "), at.Published, at.Batches,
		newLeader, duration(elected), duration(found), duration(firstBatch), 1000, duration(resumed), failedDown,
		duration(back), backlog, duration(drain), w.txnReport(r, o, txnID, out.String()), strings.Join(grepLines(out.String(), "msg=\"kafka "), " | "), duration(time.Since(begin)))
}

// The transactions' state topic of kafka.sh's cluster: its
// transaction.state.log.num.partitions.
const (
	txnStateTopic      = "__transaction_state"
	txnStatePartitions = 4
)

// txnStatePartition is the partition of __transaction_state holding the
// state of transactional.id id, whose leader is its coordinator: Kafka's
// TransactionStateManager.partitionFor, Utils.abs(id.hashCode()) %
// partitions (Java's String.hashCode, over UTF-16 code units).
func txnStatePartition(id string) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(id)) {
		h = 31*h + int32(u)
	}
	if h == math.MinInt32 {
		h = 0 // Utils.abs
	}
	if h < 0 {
		h = -h
	}
	return h % txnStatePartitions
}

// checkTxnState checks that the cluster keeps the transactions' state as it
// keeps the topics: every partition of __transaction_state on 3 replicas,
// all in sync, so that a coordinator's death loses no transaction.
func checkTxnState(t *testing.T, c *testkit.Cluster) {
	t.Helper()
	for p := range int32(txnStatePartitions) {
		pd, ok := c.Partition(txnStateTopic, p)
		if !ok || len(pd.Replicas) != 3 || len(pd.ISR) != 3 {
			t.Fatalf("%s/%d: %+v (ok %v), want 3 replicas in sync (kafka.sh's transaction.state.log.replication.factor)", txnStateTopic, p, pd, ok)
		}
	}
}

// txnReport says, for the reports, what the transactional relay r (id
// txnID, its log in log) did: its transactions committed and aborted (the
// markers on its position topic, which every transaction writes), the
// records of aborted transactions on the topic (o: what verify read
// committed; their events were published again in a later one), its
// leadership losses, takeovers and failed batches.
func (w *world) txnReport(r *inproc, o outcome, txnID, log string) string {
	w.t.Helper()
	posRecords, commits, aborts := w.tally("_" + txnID + "-position")
	records, _, _ := w.tally(w.topic)
	failed := grepLines(log, `msg="relay: batch failed; retrying"`)
	if len(failed) > 3 {
		failed = append(failed[:3], fmt.Sprintf("… %d more", len(failed)-3))
	}
	return fmt.Sprintf("position topic: %d records, %d commit and %d abort markers (%d batches counted by the relay); "+
		"%d records on the topic read uncommitted, %d read committed: %d of aborted transactions; leadership lost %d times; takeovers: %s; failed batches: %s",
		posRecords, commits, aborts, r.r.Stats().Batches, records, o.records, records-o.records,
		testkit.CountLines(log, `msg="relay session ended`),
		strings.Join(grepLines(log, `msg="relay: transactional producer ready"`), " | "), strings.Join(failed, " | "))
}

// tally reads topic up to its end offsets as a read_uncommitted consumer
// keeping control records: its data records (aborted ones too), and the
// commit and abort markers transactions left on it.
func (w *world) tally(topic string) (records, commits, aborts int) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := testkit.Client(w.t, w.brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		w.t.Fatalf("listing the end offsets of %s: %v", topic, err)
	}
	want, next := map[int32]int64{}, map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	for p, end := range want {
		for next[p] < end {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				w.t.Fatalf("reading %s uncommitted: at %v of %v", topic, next, want)
			}
			fs.EachRecord(func(r *kgo.Record) {
				next[r.Partition] = r.Offset + 1
				switch {
				case !r.Attrs.IsControl():
					records++
				case len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 1: // key: int16 version, int16 type (0 abort, 1 commit)
					commits++
				default:
					aborts++
				}
			})
		}
	}
	return records, commits, aborts
}
