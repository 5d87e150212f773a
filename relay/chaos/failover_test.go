package chaos_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
// duplicates), each aggregate's events in commit order.
//
// Runs only on the cluster of make test-failover (testkit.ClusterEnv).
func TestFailoverRelayLeaderSIGKILL(t *testing.T) {
	begin := time.Now()
	c := testkit.KafkaCluster(t)
	w := setupReplicated(t, variant{mode: relay.ModePoll}, testkit.Postgres(t), c.Brokers, 3)
	log, out := testkit.CapturingLogger(t)
	r := w.startRelay("r", relay.Config{BatchSize: 200, Logger: log})
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
	w.drained(60 * time.Second)
	published() // still running
	r.stop()

	o := w.verify(w.readTopic())
	if o.duplicates != 0 {
		t.Errorf("%d duplicate records: the idempotent producer's retries should add none", o.duplicates)
	}
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions with the database up: %v", failed+uncertain, err)
	}
	t.Logf("relay failover: %s; node %d (leader of partition 0) SIGKILLed after %d published: new leader %d elected %s later, "+
		"%d more published %s after the kill; dead node logged unreachable: %v; node back and every replica in sync %s after its start, then leader again; relay log: %s; test %s",
		o, victim, atKill, newLeader, duration(elected), 1000, duration(resumed), unreachable, duration(back),
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
