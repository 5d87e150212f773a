package chaos_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/relay"
)

// A zombie leader: relay process a leads, draining a backlog while 8
// writers commit (batches back to back: records likely in its Kafka
// client), is paused with SIGSTOP and its PostgreSQL sessions are
// terminated (the lock's, the pool's and, in logical mode, the walsender
// holding the slot). Standby b takes over and publishes newer events of the
// same aggregates; then a is resumed with SIGCONT and does what it had
// buffered until it notices its session ended.
//
// With transactions, b's InitProducerID fenced a: nothing a had buffered
// reaches a read_committed consumer, which sees every event once and every
// aggregate's records in version order, a stale copy after a newer version
// being out of order too. Without, nothing fences a: what it had buffered
// lands after b's newer events. The test reports those duplicates and stale
// copies and requires what verify does: no loss, first occurrences in
// commit order.
func TestZombieLeaderSIGSTOP(t *testing.T) {
	t.Parallel()
	eachMode(t, testZombieLeaderSIGSTOP)
}

func testZombieLeaderSIGSTOP(t *testing.T, v variant) {
	begin := time.Now()
	w := setup(t, v, testkit.Postgres(t), testkit.Kafka(t))
	cfgPath := w.writePipeline()
	stopWriters, _ := w.startWriters(8, 5*time.Millisecond, 0)

	// A backlog first, so that the leader is draining it at the stop, not
	// waiting for the next commit: what it stops with is then most likely
	// a batch in its client, produced or awaiting acks.
	testkit.WaitFor(t, 120*time.Second, "writers committing a backlog", func() bool { return w.ledger.committedCount() >= 3000 })
	// Both start together: the standby is there when the leader stops.
	// Whichever wins the lock is a, the zombie.
	a, b := w.startRelayProcessAs(cfgPath, "1"), w.startRelayProcessAs(cfgPath, "2")
	startedAt := time.Now()
	testkit.WaitFor(t, 60*time.Second, "a relay leading", func() bool { return a.leads() || b.leads() })
	led := time.Since(startedAt)
	if b.leads() {
		a, b = b, a
	}
	// b stands by once it has a session (it connects after creating the
	// topics, then tries the lock).
	testkit.WaitFor(t, 60*time.Second, "the other relay connected", func() bool {
		var n int
		err := w.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, b.app).Scan(&n)
		return err == nil && n > 0
	})
	// a has published a good amount, with more to go.
	testkit.WaitFor(t, 90*time.Second, "relay a publishing", func() bool { return w.topicRecords() >= 1000 })
	published := time.Since(startedAt)
	if b.leads() {
		t.Fatal("relay b leads while a does")
	}

	a.signal(t, syscall.SIGSTOP)
	stoppedAt := time.Now()
	backlog := w.backlog()
	sessions := w.terminateSessions(a.app)
	if w.mode == relay.ModeLogical && !slices.Contains(sessions, "walsender") {
		t.Errorf("relay a's terminated sessions %v: no walsender, yet it streamed the slot", sessions)
	}
	testkit.WaitFor(t, 60*time.Second, "relay b leading", b.leads)
	tookOver := time.Since(stoppedAt)
	// Newer events, committed after b took over, on the topic: b's, of
	// the aggregates a's buffered records belong to (50 aggregates, a few
	// hundred events: all of them, or nearly).
	before := w.ledger.committedIDs()
	testkit.WaitFor(t, 60*time.Second, "writers committing after the takeover", func() bool {
		return w.ledger.committedCount() >= len(before)+300
	})
	now := w.ledger.committedIDs()
	newer := 0
	newerAggs := map[string]bool{}
	for id, ev := range now {
		if _, ok := before[id]; !ok {
			newer++
			newerAggs[ev.agg] = true
		}
	}
	// Everything committed so far, not only the newer events: b has then
	// published every event a may have buffered, and publishes none again
	// (lateRepeats).
	w.waitDelivered(ids(now), 120*time.Second, "relay b publishing newer events")
	// What lands from here on is b's newer events and whatever a does.
	cont := w.endOffsets()

	ended := func() int { return a.count(`msg="relay session ended`) }
	endedBefore := ended()
	a.signal(t, syscall.SIGCONT)
	stopped := time.Since(stoppedAt)
	// a's worst: it flushes or commits what it had, until its lock
	// session's loss ends its session (a fenced transaction fails its
	// batch first). A drain ends only once its records are answered, and a
	// stream waits for them too (ShutdownTimeout at most).
	testkit.WaitFor(t, 60*time.Second, "relay a noticing its session ended", func() bool { return ended() > endedBefore })

	stopWriters()
	w.drained(60 * time.Second)
	a.term(t)
	b.term(t)
	for name, p := range map[string]*relayProc{"a": a, "b": b} {
		if out := p.out.String(); strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("relay process %s reported a data race:\n%s", name, out)
		}
	}
	// The scenario held: a led once, b from the takeover to the end.
	if n := a.count(`msg="relay: leader"`); n != 1 {
		t.Errorf("relay a became leader %d times, want once:\n%s", n, tail(a.out.String(), 30))
	}
	if n := b.count(`msg="relay session ended`); n != 0 {
		t.Errorf("relay b's session ended %d times after it took over:\n%s", n, tail(b.out.String(), 30))
	}

	recs := w.readTopic()
	o := w.verify(recs)
	stale := staleCopies(recs)
	late := lateRepeats(recs, cont)
	batchErrs := grepLines(a.out.String(), `msg="relay: batch failed`)
	for i, l := range batchErrs {
		batchErrs[i] = truncate(l, 300)
	}
	report := fmt.Sprintf("%s; stale copies after a newer version %d; records of relay a landed after its SIGCONT %d", o, len(stale), late)
	if w.txn {
		// A read_uncommitted consumer also sees aborted transactions: a's
		// open one at the stop (aborted by b's fence) and any a wrote
		// later and could not commit.
		all := w.readTopicAs(false)
		report += fmt.Sprintf(" (read_uncommitted: %d more records, %d of them after its SIGCONT, %d stale copies)",
			len(all)-len(recs), lateRepeats(all, cont), len(staleCopies(all)))
		if len(stale) > 0 {
			t.Errorf("%d stale copies read committed, want none:\n  %s", len(stale), strings.Join(stale[:min(len(stale), 50)], "\n  "))
		}
		if late > 0 {
			t.Errorf("%d records relay a published after its SIGCONT are visible read committed: it was not fenced", late)
		}
	}
	t.Logf("zombie leader (%s): %s; relay a leading %s after the start, 1000 records on the topic after %s, stopped %s (%s %s at the stop; sessions terminated: %s), b leading %s after the stop, %d newer events of %d aggregates published by b before the SIGCONT; relay a's failed batches: %d %s; test %s",
		v, report, duration(led), duration(published), duration(stopped), w.backlogUnit(), backlog, strings.Join(sessions, ", "), duration(tookOver), newer, len(newerAggs),
		len(batchErrs), strings.Join(batchErrs, " | "), duration(time.Since(begin)))
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions with the database up: %v", failed+uncertain, err)
	}
}

func ids(m map[uuid.UUID]event) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

// staleCopies lists the records (any occurrence, where verify checks first
// occurrences) that carry a lower version of their aggregate than a record
// before them on the partition: a stale copy after a newer event, which a
// consumer applying records in order would apply last.
func staleCopies(recs []rec) []string {
	var out []string
	newest := map[string]rec{}
	for _, r := range recs {
		n, ok := newest[r.agg]
		switch {
		case ok && r.version < n.version:
			out = append(out, fmt.Sprintf("aggregate %s: v%d at %d/%d, after v%d at %d/%d", r.agg, r.version, r.partition, r.offset, n.version, n.partition, n.offset))
		case !ok || r.version > n.version:
			newest[r.agg] = r
		}
	}
	return out
}

// lateRepeats counts the records at or after the offsets from (per
// partition) whose event is on the partition before them already. From
// the zombie's SIGCONT on, the new leader publishes only events it has not
// published (it had caught up with those committed before the takeover),
// so these are the zombie's: what it had buffered, or read again before
// noticing it lost the lead.
func lateRepeats(recs []rec, from map[int32]int64) int {
	n := 0
	seen := map[uuid.UUID]bool{}
	for _, r := range recs {
		if seen[r.id] && r.offset >= from[r.partition] {
			n++
		}
		seen[r.id] = true
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
