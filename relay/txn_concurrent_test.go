package relay_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/relay"
)

// Kafka 4 (transaction version 2) answers CONCURRENT_TRANSACTIONS to the
// first produce of a transaction begun while the previous commit's markers
// are still being written, which a relay beginning its next batch at once
// meets often (every transaction, on a loaded 3-node cluster). franz-go
// retries after a metadata refresh, and waits for one no sooner than
// MetadataMinAge after the last: at its default (5 s) such a relay
// published a batch per 5 s. Here every transaction after the first gets
// the error once: ten batches still drain in seconds, each event read
// committed once.
func TestTransactionalRelayConcurrentTransactionsRetriedPromptly(t *testing.T) {
	b := setup(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b.brokers = c.ListenAddrs()
	// Armed by each EndTxn, fired by the next produce (the fault runs on
	// the cluster's goroutine, the mutex only orders it for the race
	// detector).
	var mu sync.Mutex
	var armed bool
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Observe: true, Count: -1, When: func(kmsg.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		armed = true
		return true
	}})
	concurrent := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.ConcurrentTransactions, Count: -1, When: func(kmsg.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		fire := armed
		armed = false
		return fire
	}})

	aggs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b.appendTickets(aggs, 25)
	start := time.Now()
	r, _ := b.start(relay.Config{Transactional: true, BatchSize: 10})
	testkit.WaitFor(t, 20*time.Second, "the outbox drained", func() bool { return b.outboxCount() == 0 })
	took := time.Since(start)
	if n := concurrent.Hits(); n < 8 {
		t.Fatalf("CONCURRENT_TRANSACTIONS answered %d times, want one per transaction after the first (9)", n)
	}
	recs := b.consumeAll(true)
	if dups := checkOrder(t, recs); dups != 0 || len(recs) != 100 {
		t.Fatalf("read_committed: %d records, %d duplicates; want 100 once each", len(recs), dups)
	}
	t.Logf("%d batches drained in %s, %d produces answered CONCURRENT_TRANSACTIONS", r.Stats().Batches, took.Round(time.Millisecond), concurrent.Hits())
}
