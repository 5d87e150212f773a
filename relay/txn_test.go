package relay_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/relay"
)

// consumeAll reads the bundle's topic up to its end as a consumer with the
// given isolation sees it: up to the last stable offset reading committed,
// to the high watermark otherwise. Control records (transaction markers)
// are read to know the end was reached, and left out.
func (b *bundle) consumeAll(committed bool) []*kgo.Record {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(testkit.Client(b.t, b.brokers))
	list, iso := adm.ListEndOffsets, kgo.ReadUncommitted()
	if committed {
		list, iso = adm.ListCommittedOffsets, kgo.ReadCommitted()
	}
	ends, err := list(ctx, b.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		b.t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl := testkit.Client(b.t, b.brokers, kgo.ConsumeTopics(b.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.t.Fatalf("the topic's end not reached: %v left", left)
		}
		for _, r := range fs.Records() {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		}
	}
	return out
}

// A transactional relay stopped after Kafka committed a batch and before
// the batch's rows were deleted (a crash's worst moment): the next leader
// reads the position the transaction holds, deletes those rows, and
// publishes the rest. A read_committed consumer sees every event once, in
// order per aggregate.
func TestTransactionalRelayCrashAfterCommit(t *testing.T) {
	b := setup(t)
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b.appendTickets(aggs, 25)
	// The first commit is the first relay's: the second starts after it.
	var first atomic.Bool
	crashed := make(chan struct{})
	stop := make(chan struct{})
	defer relay.SetTxnHooks(nil, func(*relay.Relay) bool {
		if !first.CompareAndSwap(false, true) {
			return false
		}
		close(crashed)
		<-stop
		return true
	})()
	_, cancel := b.start(relay.Config{Transactional: true, BatchSize: 30})
	<-crashed
	close(stop)
	cancel()
	if n := b.outboxCount(); n != 100 {
		t.Fatalf("%d rows left after the crash, want all 100 (the committed batch not yet deleted)", n)
	}
	second, _ := b.start(relay.Config{Transactional: true, BatchSize: 30})
	testkit.WaitFor(t, 60*time.Second, "the outbox drained", func() bool { return b.outboxCount() == 0 })
	recs := b.consumeAll(true)
	if dups := checkOrder(t, recs); dups != 0 || len(recs) != 100 {
		t.Fatalf("read_committed: %d records, %d duplicates; want 100 once each", len(recs), dups)
	}
	if p := second.Stats().Published; p != 70 {
		t.Errorf("the second leader published %d events, want 70 (the crashed batch of 30 was already on Kafka)", p)
	}
}

// A zombie: the leader stalls with a transaction open (its records sent,
// not committed), loses its lock, and a new leader takes over, fences it,
// publishes the same rows again and newer events of the same aggregates.
// When the zombie resumes, the broker refuses its commit: read_committed
// consumers see every event once in order; read_uncommitted ones also see
// the zombie's aborted records.
func TestTransactionalRelayZombieFenced(t *testing.T) {
	b := setup(t)
	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b.appendTickets(aggs, 10)
	// The first transaction is the zombie's: the new leader starts after.
	var first atomic.Bool
	stalled, release := make(chan struct{}), make(chan struct{})
	defer relay.SetTxnHooks(func(*relay.Relay) {
		if first.CompareAndSwap(false, true) {
			close(stalled)
			<-release
		}
	}, nil)()
	zombie, _ := b.start(relay.Config{Transactional: true, BatchSize: 10})
	<-stalled
	var pid int
	if err := b.db.QueryRow(context.Background(), `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	leader, _ := b.start(relay.Config{Transactional: true, BatchSize: 10})
	testkit.WaitFor(t, 60*time.Second, "the new leader draining the outbox", func() bool { return b.outboxCount() == 0 })
	b.appendVersions(aggs, 11, 12)
	testkit.WaitFor(t, 60*time.Second, "the new leader publishing newer events", func() bool { return b.outboxCount() == 0 && leader.Stats().Published == 36 })
	close(release)
	testkit.WaitFor(t, 60*time.Second, "the zombie stepping down", func() bool { return !zombie.Stats().Leader })
	if p := zombie.Stats().Published; p != 0 {
		t.Errorf("the zombie published %d events, want its commit refused", p)
	}
	recs := b.consumeAll(true)
	if dups := checkOrder(t, recs); dups != 0 || len(recs) != 36 {
		t.Fatalf("read_committed: %d records, %d duplicates; want 36 once each", len(recs), dups)
	}
	all := b.consumeAll(false)
	if len(all) != 46 {
		t.Errorf("read_uncommitted: %d records, want 36 and the zombie's 10 aborted ones", len(all))
	}
}
