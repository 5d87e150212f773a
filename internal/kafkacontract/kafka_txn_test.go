package kafkacontract_test

// Transactions: what relay/txn.go and relay/logical_txn.go assume of the
// broker, on kfake and on Apache Kafka, and where the two differ
// (docs/upstream/kfake-transactions.md). Run against Apache Kafka with
//
//	line=$(bash scripts/kafka.sh up) && export "$line"
//	go test -race -count=1 -v ./internal/kafkacontract

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventline/eventline/internal/testkit"
)

// A new leader's InitProducerID (kgo's ProducerID) fences the old leader of
// the same transactional.id: when it returns, the transaction the old
// leader left open is aborted and complete on every partition (last stable
// offset = end offset, the abort marker last), so the new leader reads the
// last committed position at once, without waiting; the old leader's
// commit then fails and none of its records is ever read committed.
func TestFenceCompletesTheOpenTransaction(t *testing.T) {
	b := newBroker(t)
	data := testkitTopic(t, b, 2)
	pos := b.compactedTopic(t)
	txid := uniqueTxID(t)
	ctx := testContext(t, 2*time.Minute)

	old := b.txnClient(t, txid, time.Minute)
	commitTx(t, ctx, old, rec(data, 0, "", "committed"), rec(pos, 0, txid, "pos-1"))
	b.waitStable(t, 30*time.Second, "the first transaction's markers", data, pos)

	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceAll(t, ctx, old, rec(data, 0, "", "open-0"), rec(data, 1, "", "open-1"), rec(pos, 0, txid, "pos-open"))
	if b.stable(t, data) || b.stable(t, pos) {
		t.Fatal("the last stable offset is not held back by the open transaction")
	}

	nw := b.txnClient(t, txid, time.Minute)
	start := time.Now()
	if _, _, err := nw.ProducerID(ctx); err != nil {
		t.Fatalf("the new producer's InitProducerID: %v", err)
	}
	t.Logf("%s: the new producer's InitProducerID returned after %s", b.name, time.Since(start).Round(time.Millisecond))
	b.requireStable(t, "right after the new producer's InitProducerID returned", data, pos)
	requireLastPosition(t, b, pos, "pos-1", "ABORT")
	if got := b.committedValues(t, data); !slices.Equal(got, []string{"committed"}) {
		t.Fatalf("read committed after the fence: %q, want only the first transaction's record", got)
	}

	err := old.EndTransaction(ctx, kgo.TryCommit)
	if err == nil {
		t.Fatal("the fenced producer committed its transaction")
	}
	expect(t, b, "the fenced producer's commit (its transaction was open at the fence)", code(err), kerr.ProducerFenced.Code, kerr.InvalidTxnState.Code)
	b.requireStable(t, "after the fenced producer's commit attempt", data, pos)
	if got := b.committedValues(t, data); !slices.Equal(got, []string{"committed"}) {
		t.Fatalf("read committed after the fenced commit: %q", got)
	}

	commitTx(t, ctx, nw, rec(data, 1, "", "new"), rec(pos, 0, txid, "pos-2"))
	b.waitStable(t, 30*time.Second, "the new producer's commit markers", data, pos)
	if got := b.committedValues(t, data); !slices.Equal(got, []string{"committed", "new"}) {
		t.Fatalf("read committed after the new producer's commit: %q", got)
	}
	requireLastPosition(t, b, pos, "pos-2", "COMMIT")
}

// A fenced producer that was between transactions at the fence (a leader
// paused after a batch, whose last transaction it had aborted) and then
// keeps going gets nothing committed: its record is refused, and whatever
// it does next (abort, begin again, produce, commit) no record of it is
// read committed, while the new producer's transactions commit. The relay
// closes its client after the first failure; this is the stronger
// guarantee fencing gives. On unpatched kfake it holds only because the
// refused record opens a transaction for the new producer (see the log):
// with that fixed alone, kfake accepted the fenced producer's abort with
// the new producer's epoch, and the fenced producer then committed
// (docs/upstream/kfake-fenced-producer.patch fixes both).
func TestFencedProducerWritesNothing(t *testing.T) {
	b := newBroker(t)
	data := testkitTopic(t, b, 2)
	txid := uniqueTxID(t)
	ctx := testContext(t, 2*time.Minute)

	old := b.txnClient(t, txid, time.Minute)
	commitTx(t, ctx, old, rec(data, 0, "", "one"))
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceAll(t, ctx, old, rec(data, 0, "", "aborted"))
	if err := old.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	nw := b.txnClient(t, txid, time.Minute)
	if _, _, err := nw.ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	b.requireStable(t, "after the fence", data)

	if err := old.BeginTransaction(); err != nil {
		t.Fatalf("begin (the client does not know it is fenced yet): %v", err)
	}
	err := old.ProduceSync(ctx, rec(data, 1, "", "refused")).FirstErr()
	if err == nil {
		t.Fatal("the fenced producer's record was accepted")
	}
	expect(t, b, "the fenced producer's produce", code(err), kerr.InvalidProducerEpoch.Code)

	// Apache Kafka refuses the record before the partition joins any
	// transaction; unpatched kfake adds the partition to the current
	// epoch's transaction first and starts it: the new producer has an
	// Ongoing transaction it never began, which kfake will abort (bumping
	// the epoch, fencing the new producer) after the transaction timeout
	// unless the new producer ends it first.
	state, _ := b.txnState(t, txid)
	switch {
	case state != "Ongoing":
		t.Logf("after the refused produce: %s reports the transactional id %s", b.name, state)
	case !b.real():
		t.Logf("after the refused produce: %s reports the transactional id Ongoing: the fenced producer's refused record opened a transaction for the new producer (Apache Kafka: Empty)", b.name)
	default:
		t.Errorf("after the refused produce: %s reports the transactional id Ongoing", b.name)
	}

	// What the fenced producer tries next; each step is logged.
	aerr := old.EndTransaction(ctx, kgo.TryAbort)
	t.Logf("the fenced producer's abort: %s answers %s", b.name, errAnswer(aerr))
	if aerr != nil { // kgo keeps the transaction after a failed end: retry, as documented
		aerr = old.EndTransaction(ctx, kgo.TryAbort)
		t.Logf("the fenced producer's abort, retried: %s", errAnswer(aerr))
	}
	if berr := old.BeginTransaction(); berr != nil {
		t.Logf("the fenced producer's next begin fails: %v", berr)
	} else {
		perr := old.ProduceSync(ctx, rec(data, 1, "", "zombie")).FirstErr()
		cerr := old.EndTransaction(ctx, kgo.TryCommit)
		t.Logf("the fenced producer began another transaction: produce %s, commit %s", errAnswer(perr), errAnswer(cerr))
		if perr == nil && cerr == nil {
			t.Error("the fenced producer began, produced and committed another transaction")
		}
	}
	old.Close()

	commitTx(t, ctx, nw, rec(data, 1, "", "two"))
	b.waitStable(t, 30*time.Second, "the new producer's commit markers", data)
	if got := b.committedValues(t, data); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("read committed: %q, want [one two]", got)
	}
}

// What each broker answers a fenced producer, request by request, with
// hand-made requests (no client retries or bookkeeping in between): after
// the fence of an open transaction, and after the fence of a producer idle
// after a commit. Apache Kafka answers PRODUCER_FENCED to every EndTxn of an
// epoch older than the last InitProducerID. Unpatched kfake takes an EndTxn
// one epoch behind for a retry of the producer's own last EndTxn: a
// fenced commit gets INVALID_TXN_STATE or NONE, a fenced abort NONE, and
// NONE comes with the new producer's epoch
// (docs/upstream/kfake-fenced-producer.patch). Produce and
// AddPartitionsToTxn are answered alike.
func TestFencedProducerAnswers(t *testing.T) {
	b := newBroker(t)
	data := testkitTopic(t, b, 2)
	none := int16(0)

	t.Run("open", func(t *testing.T) {
		txid := uniqueTxID(t)
		old, _ := b.rawInit(t, txid, time.Minute)
		pid, e := old.ProducerID, old.ProducerEpoch
		if c := b.rawProduce(t, txid, data, 0, pid, e, 0, "open"); c != 0 {
			t.Fatalf("produce: %s", answer(c))
		}
		nw, _ := b.rawInit(t, txid, time.Minute)
		if nw.ErrorCode != 0 || nw.ProducerID != pid || nw.ProducerEpoch <= e {
			t.Fatalf("the new producer's InitProducerID: %s, id %d epoch %d (old: id %d epoch %d)", answer(nw.ErrorCode), nw.ProducerID, nw.ProducerEpoch, pid, e)
		}
		t.Logf("%s: fencing an open transaction took the epoch from %d to %d", b.name, e, nw.ProducerEpoch)

		r := b.rawEnd(t, txid, pid, e, true)
		expect(t, b, "EndTxn(commit) at the fenced epoch", r.ErrorCode, kerr.ProducerFenced.Code, kerr.InvalidTxnState.Code)
		r = b.rawEnd(t, txid, pid, e, false)
		expect(t, b, "EndTxn(abort) at the fenced epoch", r.ErrorCode, kerr.ProducerFenced.Code, none)
		handedOver(t, b, r, nw.ProducerEpoch)
		expect(t, b, "AddPartitionsToTxn at the fenced epoch", b.rawAddPartition(t, txid, data, 1, pid, e), kerr.ProducerFenced.Code)
		expect(t, b, "Produce at the fenced epoch", b.rawProduce(t, txid, data, 0, pid, e, 1, "late"), kerr.InvalidProducerEpoch.Code)

		// The new producer is unaffected: it commits.
		if c := b.rawProduce(t, txid, data, 1, pid, nw.ProducerEpoch, 0, "new"); c != 0 {
			t.Fatalf("the new producer's produce: %s", answer(c))
		}
		if r := b.rawEnd(t, txid, pid, nw.ProducerEpoch, true); r.ErrorCode != 0 {
			t.Fatalf("the new producer's commit: %s", answer(r.ErrorCode))
		}
	})

	t.Run("idle", func(t *testing.T) {
		txid := uniqueTxID(t)
		old, _ := b.rawInit(t, txid, time.Minute)
		pid := old.ProducerID
		if c := b.rawProduce(t, txid, data, 0, pid, old.ProducerEpoch, 0, "idle"); c != 0 {
			t.Fatalf("produce: %s", answer(c))
		}
		r := b.rawEnd(t, txid, pid, old.ProducerEpoch, true)
		if r.ErrorCode != 0 {
			t.Fatalf("commit: %s", answer(r.ErrorCode))
		}
		e := r.ProducerEpoch // the old producer's epoch for its next transaction
		nw, _ := b.rawInit(t, txid, time.Minute)
		if nw.ErrorCode != 0 || nw.ProducerEpoch <= e {
			t.Fatalf("the new producer's InitProducerID: %s, epoch %d (old: %d)", answer(nw.ErrorCode), nw.ProducerEpoch, e)
		}

		r = b.rawEnd(t, txid, pid, e, true)
		expect(t, b, "EndTxn(commit) at the epoch fenced between transactions", r.ErrorCode, kerr.ProducerFenced.Code, none)
		handedOver(t, b, r, nw.ProducerEpoch)
		r = b.rawEnd(t, txid, pid, e, false)
		expect(t, b, "EndTxn(abort) at the epoch fenced between transactions", r.ErrorCode, kerr.ProducerFenced.Code, kerr.InvalidTxnState.Code)
		expect(t, b, "AddPartitionsToTxn at the epoch fenced between transactions", b.rawAddPartition(t, txid, data, 1, pid, e), kerr.ProducerFenced.Code)
		expect(t, b, "Produce at the epoch fenced between transactions", b.rawProduce(t, txid, data, 1, pid, e, 0, "late"), kerr.InvalidProducerEpoch.Code)
	})

	b.waitStable(t, 30*time.Second, "every transaction complete", data)
	got := b.committedValues(t, data)
	slices.Sort(got)
	if !slices.Equal(got, []string{"idle", "new"}) {
		t.Fatalf("read committed: %q, want [idle new]", got)
	}
}

// handedOver logs (kfake) or fails (Apache Kafka) when a fenced producer's
// EndTxn was accepted and answered with the new producer's epoch: a
// client takes that epoch as its own and can write as the new producer.
func handedOver(t *testing.T, b *broker, r *kmsg.EndTxnResponse, newEpoch int16) {
	t.Helper()
	if r.ErrorCode != 0 || r.ProducerEpoch != newEpoch {
		return
	}
	if b.real() {
		t.Errorf("Apache Kafka handed the fenced producer the new producer's epoch %d", newEpoch)
		return
	}
	t.Logf("  and %s hands the fenced producer the new producer's epoch %d", b.name, newEpoch)
}

// InitProducerID for a transactional id whose producer has a transaction
// open: Apache Kafka starts the abort and answers CONCURRENT_TRANSACTIONS
// until the abort markers are written (clients retry), kfake aborts inline
// and answers at once. Either way, once it answers NONE the old
// transaction is complete: last stable offset = end offset, nothing of it
// read committed.
func TestInitProducerIDWithOpenTransaction(t *testing.T) {
	b := newBroker(t)
	data := testkitTopic(t, b, 2)
	txid := uniqueTxID(t)
	old, _ := b.rawInit(t, txid, time.Minute)
	pid, e := old.ProducerID, old.ProducerEpoch
	for p := range int32(2) {
		if c := b.rawProduce(t, txid, data, p, pid, e, 0, fmt.Sprintf("open-%d", p)); c != 0 {
			t.Fatalf("produce: %s", answer(c))
		}
	}
	start := time.Now()
	nw, concurrent := b.rawInit(t, txid, time.Minute)
	took := time.Since(start)
	if nw.ErrorCode != 0 {
		t.Fatalf("InitProducerID: %s", answer(nw.ErrorCode))
	}
	b.requireStable(t, "when InitProducerID answered NONE", data)
	if got := b.committedValues(t, data); len(got) != 0 {
		t.Fatalf("read committed: %q, want nothing", got)
	}
	t.Logf("%s: InitProducerID with a transaction open: %d CONCURRENT_TRANSACTIONS answers before NONE (%s); epoch %d -> %d",
		b.name, concurrent, took.Round(time.Millisecond), e, nw.ProducerEpoch)
	if b.real() && concurrent == 0 {
		t.Error("Apache Kafka answered InitProducerID at once although it had a transaction to abort")
	}
	if nw.ProducerEpoch <= e {
		t.Errorf("epoch %d after the fence, was %d", nw.ProducerEpoch, e)
	}
}

// After EndTransaction(commit) returns, Apache Kafka writes the commit
// markers asynchronously: the last stable offset (ListCommittedOffsets) can
// stay behind the end offset for a moment, and a read_committed reader
// then does not see the records yet; kfake writes them inline. What holds
// on both: while the transaction is open the last stable offset stays
// before its first record, and once it equals the end offset every
// committed record is readable, followed by its commit marker.
func TestCommittedRecordsReadableOnceStable(t *testing.T) {
	b := newBroker(t)
	data := testkitTopic(t, b, 2)
	pos := b.compactedTopic(t)
	txid := uniqueTxID(t)
	ctx := testContext(t, 3*time.Minute)
	cl := b.txnClient(t, txid, time.Minute)

	const n = 20
	lagged := 0
	var longest time.Duration
	prev, _ := b.offsets(t, data)
	for i := range n {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		vals := []string{fmt.Sprintf("%d-a", i), fmt.Sprintf("%d-b", i)}
		produceAll(t, ctx, cl, rec(data, 0, "", vals[0]), rec(data, 1, "", vals[1]), rec(pos, 0, txid, fmt.Sprintf("pos-%d", i)))
		lso, end := b.offsets(t, data)
		for p := range int32(2) {
			if lso[p] != prev[p] || end[p] != prev[p]+1 {
				t.Fatalf("transaction %d open: %s/%d has last stable offset %d, end %d; want %d, %d", i, data, p, lso[p], end[p], prev[p], prev[p]+1)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		if !b.stable(t, data, pos) {
			lagged++
		}
		took := b.waitStable(t, 30*time.Second, "the commit markers", data, pos)
		longest = max(longest, took)
		lso, _ = b.offsets(t, data)
		for p := range int32(2) {
			recs := b.readCommitted(t, data, p, prev[p], lso[p])
			if len(recs) != 2 || recs[0].Attrs.IsControl() || string(recs[0].Value) != vals[p] || marker(recs[1]) != "COMMIT" {
				t.Fatalf("transaction %d: %s/%d [%d, %d) read committed: %s, want %s then its COMMIT marker", i, data, p, prev[p], lso[p], describe(recs), vals[p])
			}
		}
		requireLastPosition(t, b, pos, fmt.Sprintf("pos-%d", i), "COMMIT")
		prev = lso
	}
	t.Logf("%s: right after EndTransaction(commit) returned, the last stable offset was behind the end offset after %d of %d commits (longest wait until stable %s)",
		b.name, lagged, n, longest.Round(time.Millisecond))
}

// A transaction left open longer than its transaction.timeout.ms is
// aborted by the broker: its records are never read committed, the last
// stable offset moves to the end offset, and its producer's commit fails.
// kfake aborts at the timeout; Apache Kafka looks for timed-out
// transactions every transaction.abort.timed.out.transaction.cleanup.interval.ms
// (10 s by default, which scripts/kafka.sh keeps), so up to 10 s later.
// The relay asks for a one-minute timeout: a leader paused longer loses
// its transaction, and the next takeover finds the previous position.
func TestTransactionTimeoutAborts(t *testing.T) {
	b := newBroker(t)
	data := testkitTopic(t, b, 2)
	pos := b.compactedTopic(t)
	txid := uniqueTxID(t)
	ctx := testContext(t, 2*time.Minute)

	// A first transaction, of another transactional id with the relay's
	// timeout, also gets the new topics served (Kafka can answer
	// NOT_LEADER for a moment, which kgo retries), so that the short
	// transaction below is written fast. (Not the same transactional id:
	// kfake keeps the timeout of its first InitProducerID, see
	// TestInitProducerIDSetsTheTimeout.)
	first := b.txnClient(t, uniqueTxID(t), time.Minute)
	commitTx(t, ctx, first, rec(data, 0, "", "before"), rec(pos, 0, txid, "pos-1"))
	b.waitStable(t, 30*time.Second, "the first commit's markers", data, pos)
	first.Close()

	cl := b.txnClient(t, txid, 2*time.Second)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceAll(t, ctx, cl, rec(data, 0, "", "late"), rec(pos, 0, txid, "pos-late"))
	open := time.Now()
	if b.stable(t, data, pos) {
		t.Fatal("the last stable offset is not held back by the open transaction")
	}
	b.waitStable(t, 30*time.Second, "the broker aborting the timed-out transaction", data, pos)
	t.Logf("%s: the transaction (timeout 2 s) was aborted %s after its records were written", b.name, time.Since(open).Round(100*time.Millisecond))
	requireLastPosition(t, b, pos, "pos-1", "ABORT")
	if got := b.committedValues(t, data); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("read committed after the timeout: %q", got)
	}

	err := cl.EndTransaction(ctx, kgo.TryCommit)
	if err == nil {
		t.Fatal("the timed-out transaction committed")
	}
	expect(t, b, "the commit of a timed-out transaction", code(err), kerr.InvalidTxnState.Code)
	cl.Close()

	nw := b.txnClient(t, txid, time.Minute)
	if _, _, err := nw.ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	commitTx(t, ctx, nw, rec(data, 1, "", "after"), rec(pos, 0, txid, "pos-2"))
	b.waitStable(t, 30*time.Second, "the new producer's commit markers", data, pos)
	if got := b.committedValues(t, data); !slices.Equal(got, []string{"before", "after"}) {
		t.Fatalf("read committed: %q, want [before after]", got)
	}
	requireLastPosition(t, b, pos, "pos-2", "COMMIT")
}

// Each InitProducerID brings its producer's transaction.timeout.ms: Apache
// Kafka applies the new producer's from then on; unpatched kfake keeps the
// one the transactional id was first initialized with (until the id
// expires). The relay always asks for the same timeout.
func TestInitProducerIDSetsTheTimeout(t *testing.T) {
	b := newBroker(t)
	txid := uniqueTxID(t)
	ctx := testContext(t, time.Minute)
	timeout := func() int32 {
		ds, err := b.adm.DescribeTransactions(ctx, txid)
		if err != nil || ds[txid].Err != nil {
			t.Fatalf("describing %s: %v %v", txid, err, ds[txid].Err)
		}
		return ds[txid].TimeoutMillis
	}
	if _, _, err := b.txnClient(t, txid, time.Minute).ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	if got := timeout(); got != 60000 {
		t.Fatalf("after the first InitProducerID (timeout 60000 ms): %d ms", got)
	}
	if _, _, err := b.txnClient(t, txid, 2*time.Second).ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	switch got := timeout(); {
	case got == 2000:
		t.Logf("%s: the new producer's InitProducerID set the transaction timeout to its 2000 ms", b.name)
	case got == 60000 && !b.real():
		t.Logf("%s: the new producer's InitProducerID (2000 ms) left the transaction timeout at the first producer's 60000 ms (Apache Kafka: 2000 ms; docs/upstream/kfake-fenced-producer.patch)", b.name)
	default:
		t.Errorf("%s: after the new producer's InitProducerID (timeout 2000 ms): %d ms", b.name, got)
	}
}

// The relay finds its position as the last committed data record of a
// compacted single-partition topic, reading read_committed with control
// records from the last stable offset backwards in growing windows, and
// stops at the record just before the last stable offset: on a topic only
// transactions write, that is a commit or abort marker, and it is there
// after compaction too. kfake compacts when told (and hourly), everything
// but the last batch; Apache Kafka never cleans the active segment, so
// nothing is compacted in this test's lifetime there.
func TestLastPositionAfterCompaction(t *testing.T) {
	b := newBroker(t)
	pos := b.compactedTopic(t)
	txid := uniqueTxID(t)
	ctx := testContext(t, 2*time.Minute)

	old := b.txnClient(t, txid, time.Minute)
	for i := range 40 {
		commitTx(t, ctx, old, rec(pos, 0, txid, fmt.Sprintf("pos-%d", i)))
	}
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceAll(t, ctx, old, rec(pos, 0, txid, "pos-open"))
	nw := b.txnClient(t, txid, time.Minute)
	if _, _, err := nw.ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	b.requireStable(t, "after the fence", pos)
	lso, _ := b.offsets(t, pos)
	before := len(b.readCommitted(t, pos, 0, 0, lso[0]))
	if b.kfake != nil {
		b.kfake.Compact()
	}
	if b.real() {
		t.Logf("%s: the position topic holds %d records read committed (markers included) up to offset %d; the active segment is never cleaned", b.name, before, lso[0])
	} else {
		after := b.readCommitted(t, pos, 0, 0, lso[0])
		t.Logf("%s: the position topic holds %d records read committed (markers included) up to offset %d, %d after Compact", b.name, before, lso[0], len(after))
		if len(after) >= before {
			t.Errorf("kfake's Compact removed nothing (%d records before, %d after)", before, len(after))
		}
	}
	requireLastPosition(t, b, pos, "pos-39", "ABORT")

	// Compacting while the new producer's transaction is open keeps the
	// last committed position, and the open one becomes it at the commit.
	if err := nw.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceAll(t, ctx, nw, rec(pos, 0, txid, "pos-new"))
	if b.kfake != nil {
		b.kfake.Compact()
	}
	requireLastPosition(t, b, pos, "pos-39", "ABORT")
	if err := nw.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	b.waitStable(t, 30*time.Second, "the new producer's commit markers", pos)
	if b.kfake != nil {
		b.kfake.Compact()
	}
	requireLastPosition(t, b, pos, "pos-new", "COMMIT")
}

// requireLastPosition reads the last committed data record of the
// single-partition topic pos as the relay's lastPosition does and fails
// unless it is want, and the record before the last stable offset is a
// marker of kind last (COMMIT or ABORT).
func requireLastPosition(t *testing.T, b *broker, pos, want, last string) {
	t.Helper()
	lso, _ := b.offsets(t, pos)
	end := lso[0]
	for w := int64(16); end > 0; w *= 4 {
		from := max(0, end-w)
		recs := b.readCommitted(t, pos, 0, from, end)
		if len(recs) == 0 || recs[len(recs)-1].Offset != end-1 {
			t.Fatalf("%s [%d, %d) read committed: %s, want offset %d last", pos, from, end, describe(recs), end-1)
		}
		if r := recs[len(recs)-1]; !r.Attrs.IsControl() || marker(r) != last {
			t.Fatalf("%s offset %d: %s, want a %s marker", pos, end-1, describe(recs[len(recs)-1:]), last)
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if !recs[i].Attrs.IsControl() {
				if got := string(recs[i].Value); got != want {
					t.Fatalf("%s: last committed position %q, want %q", pos, got, want)
				}
				return
			}
		}
		if from == 0 {
			break
		}
	}
	t.Fatalf("%s: no committed position, want %q", pos, want)
}

func testkitTopic(t *testing.T, b *broker, partitions int32) string {
	t.Helper()
	return testkit.Topic(t, b.seeds, partitions)
}

func uniqueTxID(t *testing.T) string { return testkit.UniqueName(t, "tx") }
