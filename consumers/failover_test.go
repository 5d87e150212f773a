package consumers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
)

// On a three-node cluster (replication factor 3, min.insync.replicas=2,
// acks=all), a broker leading some of the source partitions — the group's
// coordinator when it leads one — is SIGKILLed while a steady stream is
// produced and the group applies it, started again on its data once the
// group has carried on without it, and made the leader again once in sync.
// The group is neither restarted nor told: its clients follow the new
// leaders (and coordinator) and log the failover. Every event is applied
// exactly once, each key's events in their source order, none sent to the
// retry chain or the DLT.
//
// Runs only on the cluster of make test-failover (testkit.ClusterEnv).
func TestFailoverGroupLeaderSIGKILL(t *testing.T) {
	const partitions = 6
	begin := time.Now()
	c := testkit.KafkaCluster(t)
	e := newReplicatedGroupEnv(t, c.Brokers, partitions, 3)
	ctx := context.Background()
	if _, err := e.db.Exec(ctx, `ALTER TABLE applied ADD COLUMN src_part int, ADD COLUMN src_offset bigint`); err != nil {
		t.Fatal(err)
	}

	// The load: about 300 events/s over 60 keys until stopped, each batch
	// acknowledged by 2 replicas at least before the next is sent (the
	// client's own retries ride out the failover).
	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select { // load shaping, not synchronisation
			case <-stopLoad:
				return
			case <-tick.C:
			}
			batch := make([]*kgo.Record, 0, 30)
			for i := range 30 {
				r, _ := e.event(t, fmt.Sprintf("agg%d", (n*30+i)%60))
				batch = append(batch, r)
			}
			pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err := e.prod.ProduceSync(pctx, batch...).FirstErr()
			cancel()
			if err != nil {
				loadErr.Store(&err)
				return
			}
			produced.Add(int64(len(batch)))
		}
	})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopLoad); wg.Wait() }) }
	defer stop()

	log, out := testkit.CapturingLogger(t)
	group := testkit.UniqueName(t, "g")
	g, _ := e.run(t, consumers.Config{Group: group, RetryDelays: fastDelays, BatchHandler: offsetRecorder, Logger: log})
	applied := func() int64 {
		if p := loadErr.Load(); p != nil {
			t.Fatalf("producing load: %v", *p)
		}
		return g.Stats().Applied
	}
	testkit.WaitFor(t, 60*time.Second, "applying before the kill", func() bool { return applied() >= 1500 })

	// The victim: the coordinator if it leads a source partition, else
	// partition 0's leader.
	adm := kadm.NewClient(testkit.Client(t, c.Brokers))
	var coordinator int32 = -1
	if r, ok := adm.FindGroupCoordinators(ctx, group)[group]; ok && r.Err == nil {
		coordinator = r.NodeID
	}
	victim, part := int32(-1), int32(-1)
	for p := range int32(partitions) {
		pd, ok := c.Partition(e.topic, p)
		if !ok || len(pd.Replicas) != 3 || len(pd.ISR) != 3 {
			t.Fatalf("partition %d of %s: %+v (ok %v), want 3 replicas in sync", p, e.topic, pd, ok)
		}
		if victim < 0 || (pd.Leader == coordinator && victim != coordinator) {
			victim, part = pd.Leader, p
		}
	}
	if pd, _ := c.Partition(e.topic, part); pd.Replicas[0] != victim {
		t.Fatalf("partition %d of %s is led by %d, not by its preferred replica %d", part, e.topic, victim, pd.Replicas[0])
	}
	// The group's own topics, created by its preflight with the broker's
	// default factor, have three replicas too.
	if pd, ok := c.Partition(consumers.DLTTopic(e.topic, group), 0); !ok || len(pd.Replicas) != 3 {
		t.Errorf("the DLT's partition 0: %+v (ok %v), want 3 replicas", pd, ok)
	}

	atKill := applied()
	killAt := time.Now()
	c.Kill(t, victim)
	newLeader := c.Leader(t, e.topic, part, victim, 60*time.Second)
	elected := time.Since(killAt)
	testkit.WaitFor(t, 60*time.Second, "applying with the node down", func() bool { return applied() >= atKill+1500 })
	resumed := time.Since(killAt)
	testkit.WaitFor(t, 30*time.Second, "the group logging the failover", func() bool {
		s := out.String()
		return testkit.HasLine(s, `msg="kafka broker unreachable; retrying"`, fmt.Sprintf("broker=%d ", victim)) &&
			testkit.HasLine(s, `msg="kafka partition leader moved"`, "client=consumer", "topic="+e.topic+" ",
				fmt.Sprintf("partition=%d ", part), fmt.Sprintf("from=%d to=%d ", victim, newLeader))
	})

	startAt := time.Now()
	c.Start(t, victim)
	for p := range int32(partitions) {
		c.WaitInSync(t, e.topic, p, 90*time.Second)
	}
	back := time.Since(startAt)
	// The node back leads again (Kafka would move it back after 5
	// minutes): the group follows it with the data it kept.
	c.ElectPreferred(t, e.topic, partitions, 60*time.Second)
	testkit.WaitFor(t, 60*time.Second, "the group following the leader back", func() bool {
		return testkit.HasLine(out.String(), `msg="kafka partition leader moved"`, "client=consumer", "topic="+e.topic+" ",
			fmt.Sprintf("partition=%d ", part), fmt.Sprintf("from=%d to=%d ", newLeader, victim))
	})
	atBack := applied()
	testkit.WaitFor(t, 60*time.Second, "applying after the node's return", func() bool { return applied() >= atBack+1000 })
	stop()
	if p := loadErr.Load(); p != nil {
		t.Fatalf("producing load: %v", *p)
	}
	total := produced.Load()
	testkit.WaitFor(t, 60*time.Second, "every event applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) >= total })

	if n := e.count(t, `SELECT count(*) FROM applied`); n != total {
		t.Errorf("%d events applied, %d produced", n, total)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if n := e.count(t, `SELECT count(*) FROM (SELECT src_offset < lag(src_offset) OVER (PARTITION BY key ORDER BY seq) AS back FROM applied) o WHERE back`); n != 0 {
		t.Errorf("%d events applied before an earlier event of their key", n)
	}
	if n := e.count(t, `SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT src_part) AS n FROM applied GROUP BY key) k`); n != 1 {
		t.Errorf("a key's events came from %d partitions", n)
	}
	if st := g.Stats(); st.Retried != 0 || st.DeadLettered != 0 {
		t.Errorf("stats %+v: the failover sent events to the retry chain or the DLT", st)
	}
	var lines []string
	for line := range strings.Lines(out.String()) {
		if i := strings.Index(line, `msg="kafka `); i >= 0 {
			lines = append(lines, strings.TrimSpace(line[i:]))
		}
	}
	t.Logf("group failover: %d events applied once each; node %d (leader of partition %d, coordinator %d) SIGKILLed after %d applied: "+
		"new leader %d elected %s later, 1500 more applied %s after the kill; node back and every replica in sync %s after its start, then leader again; "+
		"group log: %s; test %s",
		total, victim, part, coordinator, atKill, newLeader, elected.Round(10*time.Millisecond), resumed.Round(10*time.Millisecond),
		back.Round(10*time.Millisecond), strings.Join(lines, " | "), time.Since(begin).Round(10*time.Millisecond))
}

// offsetRecorder is batchRecorder noting where each event was read.
func offsetRecorder(ctx context.Context, tx pgx.Tx, evs []*consumers.Event) error {
	ids := make([]string, len(evs))
	keys := make([]string, len(evs))
	parts := make([]int32, len(evs))
	offsets := make([]int64, len(evs))
	for i, ev := range evs {
		ids[i], keys[i], parts[i], offsets[i] = ev.ID.String(), ev.AggregateID, ev.Partition, ev.Offset
	}
	_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, attempt, src_part, src_offset)
		SELECT id, k, 0, p, o FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[]) WITH ORDINALITY AS t(id, k, p, o, i) ORDER BY i
		ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ids, keys, parts, offsets)
	return err
}
