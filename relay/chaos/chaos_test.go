// Package chaos_test proves the relay's two guarantees under failures, on
// kfake or on the real broker named by EVENTLINE_TEST_KAFKA, in both of the
// relay's modes (a subtest each): poll (the producer inserts outbox rows,
// the relay drains the table) and logical (the producer emits logical
// decoding messages, the relay streams them from a replication slot and
// resumes at the slot's confirmed position):
//
//   - no loss: whatever fails (the relay process killed with SIGKILL, the
//     broker stopped and restarted, PostgreSQL restarted or crashed), every
//     committed event ends up on its topic; duplicates are allowed and
//     reported;
//   - order: every aggregate's events appear on its partition in commit
//     order (first occurrences), with concurrent writers and across leader
//     takeovers.
//
// Writers are business transactions: they bump a row per aggregate
// (`UPDATE … SET v = v + 1 RETURNING v`) and append the event at that
// version in the same transaction, so the version is the commit order of the
// aggregate's events. The tests record every committed event id and, at the
// end, read the whole topic.
package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/relay"
)

// binary is the eventline command built with -race for the SIGKILL test.
var binary string

func TestMain(m *testing.M) {
	path, cleanup, err := testkit.BuildEventline(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = path
	testkit.Main(m, cleanup)
}

// The relay process is killed with SIGKILL at random points of its work
// while 8 writers commit, and restarted each time; a last one drains the
// outbox (poll) or the slot (logical) and stops on SIGTERM.
func TestNoLossRelaySIGKILL(t *testing.T) {
	t.Parallel()
	eachMode(t, testNoLossRelaySIGKILL)
}

func testNoLossRelaySIGKILL(t *testing.T, v variant) {
	begin := time.Now()
	w := setup(t, v, testkit.Postgres(t), testkit.Kafka(t))
	cfgPath := w.writePipeline()
	stopWriters, _ := w.startWriters(8, 20*time.Millisecond, 0)

	const kills = 8
	var procs []*relayProc
	leaderKills := 0
	var pending []string // backlog at each kill
	for range kills {
		p := w.startRelayProcess(cfgPath)
		procs = append(procs, p)
		if rand.IntN(6) > 0 {
			// Mostly while it leads: somewhere in reading, producing,
			// awaiting acks or deleting a batch of the backlog that
			// built up while no relay ran.
			testkit.WaitFor(t, 60*time.Second, "relay process leading", p.leads)
		}
		// Where the kill lands: mostly within the first batches of the
		// backlog, now and then anywhere.
		if rand.IntN(3) > 0 {
			time.Sleep(rand.N(150 * time.Millisecond))
		} else {
			time.Sleep(rand.N(time.Second))
		}
		if p.leads() {
			leaderKills++
		}
		pending = append(pending, w.backlog())
		p.kill(t)
		committed := w.ledger.committedCount()
		// No relay for a while: writers go on committing, a backlog builds.
		testkit.WaitFor(t, 30*time.Second, "writers committing", func() bool { return w.ledger.committedCount() >= committed+100 })
		time.Sleep(rand.N(time.Second))
	}

	last := w.startRelayProcess(cfgPath)
	procs = append(procs, last)
	testkit.WaitFor(t, 60*time.Second, "last relay process leading", last.leads)
	stopWriters()
	drainStart := time.Now()
	w.drained(60 * time.Second)
	drain := time.Since(drainStart)
	last.term(t)
	for i, p := range procs {
		if out := p.out.String(); strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("relay process %d reported a data race:\n%s", i, out)
		}
	}
	if leaderKills < 3 {
		t.Errorf("only %d of %d kills hit a leading relay", leaderKills, kills)
	}

	o := w.verify(w.readTopic())
	t.Logf("SIGKILL (%s): %s; %d kills (%d while leading; %s at the kills: %s); final drain %s; test %s",
		v, o, kills, leaderKills, w.backlogUnit(), strings.Join(pending, " "), duration(drain), duration(time.Since(begin)))
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions (%d at commit) with the database up: %v", failed+uncertain, uncertain, err)
	}
}

// The broker is stopped for 10 s while the relay (in process) publishes and
// 8 writers commit, then started again on its data.
func TestNoLossBrokerRestart(t *testing.T) {
	t.Parallel()
	eachMode(t, testNoLossBrokerRestart)
}

func testNoLossBrokerRestart(t *testing.T, v variant) {
	mode := v.mode
	begin := time.Now()
	brokers, restart := testkit.RestartableKafka(t)
	w := setup(t, v, testkit.Postgres(t), brokers)
	r := w.startRelay("r", relay.Config{BatchSize: 200})
	stopWriters, _ := w.startWriters(8, 20*time.Millisecond, 0)

	w.waitPublished(r, 300, 60*time.Second, "relay publishing")
	const down = 10 * time.Second
	stopAt := time.Now()
	restart(down)
	outage := time.Since(stopAt)
	committed := w.ledger.committedCount()
	upAt := time.Now()
	// What the writers committed during the outage waited: in the outbox
	// (poll), in the slot (logical: committed, not yet published).
	waiting := w.outboxCount()
	if mode == relay.ModeLogical {
		waiting = committed - int(r.r.Stats().Published)
	}
	backlog := w.backlog()
	if waiting < 100 {
		t.Errorf("only %d events waiting after a %s outage: was the broker down?", waiting, down)
	}
	// Caught up with everything committed during the outage...
	w.waitPublished(r, committed, 90*time.Second, "relay catching up after the restart")
	catchUp := time.Since(upAt)
	// ...and keeps going with the new writes.
	w.waitPublished(r, committed+300, 60*time.Second, "relay publishing new writes")
	stopWriters()
	w.drained(60 * time.Second)
	r.stop()

	o := w.verify(w.readTopic())
	t.Logf("broker restart (%s): %s; broker down %s (stop, down, start: %s); backlog of %d events (%s %s) at the restart, caught up %s later; test %s",
		v, o, down, duration(outage), waiting, w.backlogUnit(), backlog, duration(catchUp), duration(time.Since(begin)))
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions with the database up: %v", failed+uncertain, err)
	}
}

// PostgreSQL is restarted twice while the relay (in process) publishes and
// 8 writers commit: a fast shutdown (clients disconnected, checkpoint) and
// an immediate one (no checkpoint: crash recovery at the next start). The
// writers retry what failed and record only what committed. In logical mode
// the relay reconnects its replication connection and resumes at the slot's
// confirmed position (after the crash, the position last saved: an older
// one, whose events it publishes again).
func TestNoLossPostgresRestart(t *testing.T) {
	t.Parallel()
	eachMode(t, testNoLossPostgresRestart)
}

func testNoLossPostgresRestart(t *testing.T, v variant) {
	mode := v.mode
	begin := time.Now()
	pg := testkit.RestartablePostgres(t)
	w := setup(t, v, pg.URL(), testkit.Kafka(t))
	r := w.startRelay("r", relay.Config{BatchSize: 200})
	stopWriters, _ := w.startWriters(8, 20*time.Millisecond, 0)

	var phases []string
	mark := 0
	for _, immediate := range []bool{false, true} {
		w.waitPublished(r, mark+1000, 60*time.Second, "relay publishing")
		before := w.slotConfirmed() // logical: the slot's position before the stop
		stopAt := time.Now()
		pg.Restart(t, immediate, 2*time.Second)
		upAt := time.Now()
		committed := w.ledger.committedCount()
		back := ""
		if mode == relay.ModeLogical {
			// Where the slot resumes: it moves back to the position
			// last written to disk (a checkpoint's), and the relay
			// publishes again what lies after it.
			back = fmt.Sprintf(", slot back by %s", w.slotBehind(before))
		}
		w.waitPublished(r, committed, 90*time.Second, "relay catching up after the restart")
		mark = committed
		kind := "fast"
		if immediate {
			kind = "immediate"
		}
		phases = append(phases, fmt.Sprintf("%s shutdown: down %s%s, caught up %s later", kind, duration(upAt.Sub(stopAt)), back, duration(time.Since(upAt))))
	}
	// Writers and relay carry on after the crash recovery.
	w.waitPublished(r, mark+300, 60*time.Second, "relay publishing new writes")
	stopWriters()
	w.drained(60 * time.Second)
	r.stop()

	o := w.verify(w.readTopic())
	_, _, failed, lastErr := w.ledger.counts()
	t.Logf("postgres restarts (%s): %s; %s; %d writer transactions failed and were retried (last: %v); test %s",
		v, o, strings.Join(phases, "; "), failed, lastErr, duration(time.Since(begin)))
}

// 16 writers append concurrently to the same 50 aggregates while relays
// take over from each other: the leader is stopped (gracefully: it finishes
// its batch in flight, then lets go of the lock) a quarter of the way
// through, and then, four times, the leader's lock session is terminated by
// the database (abruptly: the old leader may still have a batch in flight
// when a standby takes over, so two relays produce at once). In logical mode
// only one relay can stream the slot: the new leader is refused (SQLSTATE
// 55006) until the old one's walsender is gone, and retries; it resumes at
// the slot's confirmed position.
func TestOrderConcurrentWritersAcrossTakeover(t *testing.T) {
	t.Parallel()
	eachMode(t, testOrderConcurrentWritersAcrossTakeover)
}

func testOrderConcurrentWritersAcrossTakeover(t *testing.T, v variant) {
	mode := v.mode
	begin := time.Now()
	w := setup(t, v, testkit.Postgres(t), testkit.Kafka(t))
	log, out := testkit.CapturingLogger(t)
	relays := []*inproc{w.startRelay("a", relay.Config{BatchSize: 100, Logger: log}), w.startRelay("b", relay.Config{BatchSize: 100, Logger: log})}
	leader := func() *inproc {
		var l *inproc
		for _, p := range relays {
			if p.r.Stats().Leader {
				if l != nil {
					return nil // two say they lead: one is about to notice it lost
				}
				l = p
			}
		}
		return l
	}
	testkit.WaitFor(t, 60*time.Second, "a leader", func() bool { return leader() != nil })

	const writers, each = 16, 400
	_, wait := w.startWriters(writers, 8*time.Millisecond, each)
	total := writers * each

	testkit.WaitFor(t, 60*time.Second, "a quarter written", func() bool { return w.ledger.committedCount() >= total/4 })
	old := leader()
	old.stop()
	relays = append(relays, w.startRelay("c", relay.Config{BatchSize: 100, Logger: log}))
	testkit.WaitFor(t, 60*time.Second, "a new leader", func() bool { l := leader(); return l != nil && l != old })
	leaders := []string{old.name, leader().name + " (graceful)"}

	var latencies []string
	for _, share := range []int{40, 55, 70, 85} {
		testkit.WaitFor(t, 60*time.Second, fmt.Sprintf("%d%% written", share), func() bool { return w.ledger.committedCount() >= total*share/100 })
		old := leader()
		pid := w.leaderSession()
		if old == nil || pid == 0 {
			t.Fatalf("no leader to take over from (relay %v, lock session %d)", old, pid)
		}
		// The step-down is read from the old leader's log, not polled from
		// its Stats: it may win the lock back before a poll sees it lose.
		ended := func() int {
			return testkit.CountLines(out.String(), `msg="relay session ended`, "relay="+old.name+" ")
		}
		endedBefore := ended()
		if _, err := w.db.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		terminatedAt := time.Now()
		testkit.WaitFor(t, 60*time.Second, "another session holding the leader lock", func() bool {
			p := w.leaderSession()
			return p != 0 && p != pid
		})
		latencies = append(latencies, duration(time.Since(terminatedAt)))
		// The old leader notices and steps down (it may then win the lock
		// again: which relay leads next is not the test's business).
		testkit.WaitFor(t, 60*time.Second, "the old leader stepping down and one leader", func() bool {
			return ended() > endedBefore && leader() != nil
		})
		leaders = append(leaders, leader().name)
	}

	wait()
	w.drained(60 * time.Second)
	var published uint64
	for _, p := range relays {
		published += p.r.Stats().Published
		p.stop()
	}

	o := w.verify(w.readTopic())
	refused := ""
	if mode == relay.ModeLogical {
		// A new leader whose stream the slot refused while the old
		// leader's walsender still held it (it retries).
		refused = fmt.Sprintf("; slot busy (SQLSTATE 55006) %d times", strings.Count(out.String(), "SQLSTATE 55006"))
	}
	t.Logf("takeovers (%s): %s; leaders %s (then lock sessions terminated; new lock holder after %s)%s; %d events published by the relays; test %s",
		v, o, strings.Join(leaders, " -> "), strings.Join(latencies, ", "), refused, published, duration(time.Since(begin)))
	if _, uncertain, failed, err := w.ledger.counts(); uncertain+failed > 0 {
		t.Errorf("writers failed %d transactions with the database up: %v", failed+uncertain, err)
	}
}

// leaderSession is the backend pid holding the relays' leader lock (an
// advisory lock on hashtextextended(key, 0): classid holds its high 32 bits,
// objid its low ones), or 0 when none does.
func (w *world) leaderSession() int32 {
	var pid int32
	err := w.db.QueryRow(context.Background(), `SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('eventline_relay:public', 0)`).Scan(&pid)
	if err != nil {
		return 0
	}
	return pid
}
