package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/producer"
	"github.com/eventline/eventline/relay"
)

const (
	partitions = 6
	aggregates = 50
)

// world is one test's outbox database, topic, producer, business table and
// the ledger of what its writers committed.
type world struct {
	t        *testing.T
	dbURL    string
	db       *pgxpool.Pool
	brokers  []string
	topic    string
	replicas int16
	pipeline []byte // eventline.yaml routing the opened tickets to topic
	prod     *producer.Producer
	aggs     []string
	ledger   ledger
	// mode is the relay's: poll (the producer inserts outbox rows) or
	// logical (the producer emits logical decoding messages, the relay
	// streams them from the replication slot).
	mode relay.Mode
	// txn: the relays publish transactionally; the topic is read committed
	// and must hold every event once.
	txn bool
	adm *kadm.Client // admin, created by the first endOffsets
}

// variant is one configuration every guarantee test runs in: the relay's
// mode, and whether its output is transactional (then the topic is read as
// a read_committed consumer reads it, and must hold no duplicate).
type variant struct {
	mode relay.Mode
	txn  bool
}

func (v variant) String() string {
	if v.txn {
		return string(v.mode) + "+transactions"
	}
	return string(v.mode)
}

// variants are the configurations every guarantee test runs in.
var variants = []variant{{mode: relay.ModePoll}, {mode: relay.ModeLogical}, {mode: relay.ModePoll, txn: true}, {mode: relay.ModeLogical, txn: true}}

// eachMode runs test as a parallel subtest per variant, named after it.
func eachMode(t *testing.T, test func(t *testing.T, v variant)) {
	t.Helper()
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			test(t, v)
		})
	}
}

func setup(t *testing.T, v variant, dbURL string, brokers []string) *world {
	t.Helper()
	return setupReplicated(t, v, dbURL, brokers, 1)
}

// setupReplicated's topic has replicas replicas per partition (what
// eventline.yaml asks the relay to create).
func setupReplicated(t *testing.T, v variant, dbURL string, brokers []string, replicas int16) *world {
	t.Helper()
	mode := v.mode
	ctx := context.Background()
	opts := []testkit.FixtureOption{testkit.Database(dbURL), testkit.MaxConns(24)} // up to 16 writers plus the test's own queries
	if mode == relay.ModeLogical {
		opts = append(opts, testkit.Mode(producer.ModeLogical)) // also the publication and the slot
	}
	f := testkit.Setup(t, opts...)
	db := f.DB
	// The business table: one row per aggregate, whose version the writers
	// bump in the transaction that appends the event. Its row lock orders
	// the writers of one aggregate, so the version is the commit order.
	if _, err := db.Exec(ctx, `CREATE TABLE chaos_agg (id text PRIMARY KEY, v bigint NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dbURL: dbURL, db: db, brokers: brokers, topic: testkit.UniqueName(t, "tickets"), replicas: replicas, mode: mode, txn: v.txn}
	for range aggregates {
		w.aggs = append(w.aggs, uuid.NewString())
	}
	if _, err := db.Exec(ctx, `INSERT INTO chaos_agg (id) SELECT unnest($1::text[])`, w.aggs); err != nil {
		t.Fatal(err)
	}
	w.pipeline = fmt.Appendf(nil, "topics:\n  - name: %s\n    partitions: %d\n    replication_factor: %d\n    events: [helpdesk.tickets.TicketOpened]\n", w.topic, partitions, replicas)
	w.prod = f.Producer(t, w.pipeline, testevents.Catalog(), &testevents.TicketOpened{})
	w.ledger.committed = map[uuid.UUID]event{}
	w.ledger.uncertain = map[uuid.UUID]event{}
	return w
}

// pipe is w.pipeline parsed: what the in-process relays publish by.
func (w *world) pipe() *pipeline.Pipeline {
	p, err := pipeline.Parse(w.pipeline)
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// event is what a writer appended: the aggregate and its version.
type event struct {
	agg     string
	version int64
}

// ledger records the writers' outcomes. An event is committed when its
// commit returned nil, uncertain when the commit itself failed (the
// connection died during COMMIT: it may or may not have committed).
type ledger struct {
	mu        sync.Mutex
	committed map[uuid.UUID]event
	uncertain map[uuid.UUID]event
	failed    int // transactions that failed before COMMIT (rolled back)
	lastErr   error
}

func (l *ledger) committedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.committed)
}

func (l *ledger) counts() (committed, uncertain, failed int, lastErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.committed), len(l.uncertain), l.failed, l.lastErr
}

// committedIDs is the set of events committed so far.
func (l *ledger) committedIDs() map[uuid.UUID]event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.committed)
}

var errCommitUnknown = errors.New("commit outcome unknown")

// appendOne is a business transaction: bump the aggregate's version, append
// the event at that version, commit.
func (w *world) appendOne(agg string, id uuid.UUID) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tx, err := w.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var v int64
	if err := tx.QueryRow(ctx, `UPDATE chaos_agg SET v = v + 1 WHERE id = $1 RETURNING v`, agg).Scan(&v); err != nil {
		return 0, err
	}
	if err := w.prod.Append(ctx, tx, producer.Message{AggregateType: "ticket", AggregateID: agg, AggregateVersion: v, EventID: id, Event: opened(agg)}); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return v, fmt.Errorf("%w: %w", errCommitUnknown, err)
	}
	return v, nil
}

func opened(id string) *testevents.TicketOpened {
	return &testevents.TicketOpened{TicketID: id, RequesterID: id, Attachments: []testevents.Attachment{}, Channel: "MAIL", OpenedAt: time.UnixMilli(1_790_000_000_000).UTC()}
}

// startWriters runs n writers, each committing events to random aggregates,
// at most one transaction per pace (0: as fast as it can) and at most
// budget events (0: no limit). A failed transaction is retried with a new
// event after a short pause. stop ends them and returns once they are done;
// wait returns once they spent their budgets.
func (w *world) startWriters(n int, pace time.Duration, budget int) (stop, wait func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tick <-chan time.Time
			if pace > 0 {
				tk := time.NewTicker(pace)
				defer tk.Stop()
				tick = tk.C
			}
			for written := 0; budget == 0 || written < budget; {
				if tick != nil {
					select { // load shaping, not synchronisation
					case <-done:
						return
					case <-tick:
					}
				}
				select {
				case <-done:
					return
				default:
				}
				agg := w.aggs[rand.IntN(len(w.aggs))]
				id := uuid.New()
				v, err := w.appendOne(agg, id)
				w.ledger.mu.Lock()
				switch {
				case err == nil:
					w.ledger.committed[id] = event{agg, v}
					written++
				case errors.Is(err, errCommitUnknown):
					w.ledger.uncertain[id] = event{agg, v}
					w.ledger.lastErr = err
				default:
					w.ledger.failed++
					w.ledger.lastErr = err
				}
				w.ledger.mu.Unlock()
				if err != nil {
					select { // the database is restarting: do not spin
					case <-done:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		}()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	w.t.Cleanup(stop)
	return stop, wg.Wait
}

// inproc is a relay run in the test process.
type inproc struct {
	name   string
	r      *relay.Relay
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (w *world) startRelay(name string, cfg relay.Config) *inproc {
	w.t.Helper()
	cfg.DatabaseURL = w.dbURL
	cfg.Brokers = w.brokers
	cfg.Pipeline = w.pipe()
	cfg.Mode = w.mode
	cfg.Transactional = w.txn
	if cfg.Logger == nil {
		cfg.Logger = testkit.Logger(w.t)
	}
	cfg.Logger = cfg.Logger.With("relay", name)
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.StandbyRetry == 0 {
		cfg.StandbyRetry = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	r, err := relay.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &inproc{name: name, r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if err := r.Run(ctx); err != nil {
			w.t.Errorf("relay %s: %v", name, err)
		}
	}()
	w.t.Cleanup(p.stop)
	return p
}

// stop cancels the relay's context (a graceful stop: the batch in flight is
// finished) and waits for Run to return.
func (p *inproc) stop() {
	p.once.Do(func() {
		p.cancel()
		<-p.done
		p.r.Close()
	})
}

// relayProc is `eventline relay` run as a child process.
type relayProc struct {
	mode    relay.Mode
	app     string // its sessions' application_name ("" when not named)
	cmd     *exec.Cmd
	out     *testkit.SyncBuffer
	exited  chan struct{}
	waitErr error
}

// writePipeline writes the pipeline file the child relay reads.
func (w *world) writePipeline() string {
	path := filepath.Join(w.t.TempDir(), "eventline.yaml")
	if err := os.WriteFile(path, w.pipeline, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

func (w *world) startRelayProcess(cfgPath string) *relayProc {
	w.t.Helper()
	return w.startRelayProcessAs(cfgPath, "")
}

// startRelayProcessAs is startRelayProcess with the process's PostgreSQL
// sessions (pool, lock, replication connections) named app by
// application_name, unique to the test, so that the test can find and
// terminate them (terminateSessions).
func (w *world) startRelayProcessAs(cfgPath, app string) *relayProc {
	w.t.Helper()
	dbURL := w.dbURL
	if app != "" {
		app = fmt.Sprintf("chaos-relay-%s-%08x", app, rand.Uint32())
		u, err := url.Parse(w.dbURL)
		if err != nil {
			w.t.Fatal(err)
		}
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		dbURL = u.String()
	}
	args := []string{"relay", "--config", cfgPath, "--mode", string(w.mode), "--batch-size", "100", "--poll-interval", "200ms"}
	if w.mode == relay.ModeLogical {
		// Confirm often (default: every second), so that kills land
		// between confirmations too, not only before the first.
		args = append(args, "--status-interval", "100ms")
	}
	if w.txn {
		args = append(args, "--transactions")
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = filepath.Dir(cfgPath)
	env := os.Environ()
	for _, k := range []string{"DATABASE_URL", "KAFKA_BROKERS", "EVENTLINE_CONFIG", "EVENTLINE_SCHEMA", "EVENTLINE_LOG_LEVEL", "EVENTLINE_MODE", "EVENTLINE_SLOT", "EVENTLINE_TRANSACTIONS", "EVENTLINE_TRANSACTIONAL_ID"} {
		env = testkit.WithoutEnv(env, k)
	}
	cmd.Env = append(env, "DATABASE_URL="+dbURL, "KAFKA_BROKERS="+strings.Join(w.brokers, ","), "EVENTLINE_LOG_LEVEL=info")
	p := &relayProc{mode: w.mode, app: app, cmd: cmd, out: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	w.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// leads: the process has become the leader and, in logical mode, streams
// the slot (it set it up, drained the table, started replication).
func (p *relayProc) leads() bool {
	if p.mode == relay.ModeLogical {
		return strings.Contains(p.out.String(), "relay: streaming")
	}
	return strings.Contains(p.out.String(), "relay: leader")
}

// signal sends sig (SIGSTOP, SIGCONT) to the process.
func (p *relayProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to the relay process: %v", sig, err)
	}
}

// count counts the lines of the process's output containing every one of
// parts.
func (p *relayProc) count(parts ...string) int { return testkit.CountLines(p.out.String(), parts...) }

// terminateSessions terminates the PostgreSQL sessions of the relay
// process named app (startRelayProcessAs) in the test's database, as a
// network partition would end them, and waits until they are gone: their
// backends have exited, and a walsender among them (logical mode: a
// session too, in pg_stat_activity as in pg_stat_replication) no longer
// holds the slot. It returns the terminated backends' types.
func (w *world) terminateSessions(app string) []string {
	w.t.Helper()
	ctx := context.Background()
	// Listed first, terminated after: the list is what the terminations
	// act on, nothing else.
	rows, err := w.db.Query(ctx, `WITH s AS MATERIALIZED (
			SELECT pid, backend_type FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1)
		SELECT pid, backend_type, pg_terminate_backend(pid) FROM s`, app)
	if err != nil {
		w.t.Fatal(err)
	}
	var pids []int32
	var kinds []string
	for rows.Next() {
		var pid int32
		var kind string
		var ok bool
		if err := rows.Scan(&pid, &kind, &ok); err != nil {
			w.t.Fatal(err)
		}
		if !ok {
			w.t.Errorf("pg_terminate_backend(%d) (%s of %s) failed", pid, kind, app)
		}
		pids = append(pids, pid)
		kinds = append(kinds, kind)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	if len(pids) == 0 {
		w.t.Fatalf("no session of %s to terminate", app)
	}
	testkit.WaitFor(w.t, 30*time.Second, "the sessions of "+app+" gone", func() bool {
		var n int
		err := w.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1))
			+ (SELECT count(*) FROM pg_stat_replication WHERE pid = ANY($1) OR application_name = $2)
			+ (SELECT count(*) FROM pg_replication_slots WHERE active_pid = ANY($1))`, pids, app).Scan(&n)
		return err == nil && n == 0
	})
	return kinds
}

// endOffsets is the topic's high watermark per partition (where a
// read_uncommitted consumer's next records land).
func (w *world) endOffsets() map[int32]int64 {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if w.adm == nil {
		w.adm = kadm.NewClient(testkit.Client(w.t, w.brokers))
	}
	ends, err := w.adm.ListEndOffsets(ctx, w.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		w.t.Fatalf("listing end offsets: %v", err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// topicRecords is the number of records on the topic (read_uncommitted,
// transaction markers included).
func (w *world) topicRecords() int64 {
	var n int64
	for _, o := range w.endOffsets() {
		n += o
	}
	return n
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *relayProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("relay process still running 30s after SIGKILL")
	}
}

// term sends SIGTERM and expects a clean exit.
func (p *relayProc) term(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("relay process still running 60s after SIGTERM:\n%s", tail(p.out.String(), 30))
	}
	if p.waitErr != nil {
		t.Errorf("relay process exited with %v after SIGTERM:\n%s", p.waitErr, tail(p.out.String(), 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (w *world) outboxCount() int {
	var n int
	if err := w.db.QueryRow(context.Background(), `SELECT count(*) FROM eventline_outbox`).Scan(&n); err != nil {
		return -1 // the database may be restarting; callers poll
	}
	return n
}

// slotLag is the WAL between the server's current position and the
// replication slot's confirmed one, in bytes (-1 when it cannot be read:
// the database may be restarting). It counts all WAL, the events' and
// everything else the server writes meanwhile (other tests' databases).
func (w *world) slotLag() int64 {
	var n int64
	if err := w.db.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
		FROM pg_replication_slots WHERE database = current_database()`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// slotConfirmed is the slot's confirmed_flush_lsn ("" when it cannot be
// read).
func (w *world) slotConfirmed() string {
	var lsn string
	if err := w.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE database = current_database()`).Scan(&lsn); err != nil {
		return ""
	}
	return lsn
}

// slotBehind reports how far the slot's confirmed position is behind lsn
// (an earlier reading of it), for the reports; the database may be just
// back from a restart.
func (w *world) slotBehind(lsn string) string {
	if lsn == "" {
		return "?"
	}
	var n int64
	testkit.WaitFor(w.t, 30*time.Second, "reading the slot", func() bool {
		return w.db.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn)::bigint
			FROM pg_replication_slots WHERE database = current_database()`, lsn).Scan(&n) == nil
	})
	return fmt.Sprintf("%.1fKiB", float64(n)/1024)
}

// backlog is what waits for the relay, for the reports: poll mode's outbox
// rows, logical mode's slot lag.
func (w *world) backlog() string {
	if w.mode == relay.ModeLogical {
		n := w.slotLag()
		if n < 0 {
			return "?"
		}
		return fmt.Sprintf("%.1fKiB", float64(n)/1024)
	}
	return fmt.Sprint(w.outboxCount())
}

// backlogUnit names what backlog counts.
func (w *world) backlogUnit() string {
	if w.mode == relay.ModeLogical {
		return "slot lag"
	}
	return "outbox rows"
}

// waitPublished waits, up to limit, until relay r has published the first n
// events the writers committed (n more than committed now: until they have
// committed them too).
//
// Poll mode: r's Published counter reaches n. Logical mode: that counter
// also counts what a restart publishes again from the slot's confirmed
// position (after a PostgreSQL restart, possibly everything), so the slot
// tells instead: its confirmed position reaches the WAL position taken once
// the ledger held n events.
func (w *world) waitPublished(r *inproc, n int, limit time.Duration, what string) {
	w.t.Helper()
	if w.mode != relay.ModeLogical {
		testkit.WaitFor(w.t, limit, what, func() bool { return r.r.Stats().Published >= uint64(n) })
		return
	}
	deadline := time.Now().Add(limit)
	testkit.WaitFor(w.t, limit, what+": writers committing", func() bool { return w.ledger.committedCount() >= n })
	w.waitConfirmed(w.walNow(time.Until(deadline)), time.Until(deadline), what)
}

// walNow is a WAL position past every commit that has returned
// (testkit.WALFlushedPast), retried for up to limit (the database may be
// restarting). The write position (pg_current_wal_lsn) is not: with
// synchronous_commit off a returned commit can lie past it, and a wait for
// the slot to reach it ended before the last commits were decoded (1 run in
// about 110 of TestNoLossRelaySIGKILL reported them missing; with the WAL
// writer slowed to 10 s, 5 of 7).
func (w *world) walNow(limit time.Duration) string {
	w.t.Helper()
	var lsn string
	testkit.WaitFor(w.t, limit, "the current WAL position", func() bool {
		var err error
		lsn, err = testkit.WALFlushedPast(context.Background(), w.db)
		return err == nil
	})
	return lsn
}

// waitConfirmed waits until the slot's confirmed_flush_lsn has reached
// target: the relay had every event committed before target acknowledged by
// Kafka (it confirms no transaction before all of it and every one before
// it are).
func (w *world) waitConfirmed(target string, limit time.Duration, what string) {
	w.t.Helper()
	testkit.WaitFor(w.t, limit, what+": slot confirmed up to "+target, func() bool {
		var done bool
		err := w.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn >= $1::pg_lsn
			FROM pg_replication_slots WHERE database = current_database()`, target).Scan(&done)
		return err == nil && done
	})
}

// waitDelivered waits until the relays have delivered the committed events
// ids, whichever relay processes lead: in poll mode their rows are gone
// from the outbox (a relay deletes a row once Kafka acknowledged its record,
// or once its transaction committed); in logical mode the slot's confirmed
// position has reached the WAL position taken now, after their commits.
func (w *world) waitDelivered(ids []uuid.UUID, limit time.Duration, what string) {
	w.t.Helper()
	if w.mode == relay.ModeLogical {
		w.waitConfirmed(w.walNow(30*time.Second), limit, what)
		return
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	testkit.WaitFor(w.t, limit, what, func() bool {
		var n int
		err := w.db.QueryRow(context.Background(), `SELECT count(*) FROM eventline_outbox WHERE event_id = ANY($1::uuid[])`, strs).Scan(&n)
		return err == nil && n == 0
	})
}

// drained waits until the relay has delivered everything committed so far
// (call it once the writers stopped) and checks nothing was parked.
//
// Poll mode: the outbox is empty. Logical mode: the outbox table stays
// empty, so what tells is the slot: its confirmed_flush_lsn (the position
// the relay reported once Kafka had acknowledged every event before it) has
// reached the server's WAL position taken now, after every committed
// event's commit record.
func (w *world) drained(limit time.Duration) {
	w.t.Helper()
	ctx := context.Background()
	switch w.mode {
	case relay.ModeLogical:
		w.waitConfirmed(w.walNow(30*time.Second), limit, "slot drained")
		if n := w.outboxCount(); n != 0 {
			w.t.Errorf("%d rows in the outbox table in logical mode (the producer writes messages)", n)
		}
	default:
		testkit.WaitFor(w.t, limit, "outbox drained", func() bool { return w.outboxCount() == 0 })
	}
	var parked int
	if err := w.db.QueryRow(ctx, `SELECT count(*) FROM eventline_outbox_parked`).Scan(&parked); err != nil {
		w.t.Fatal(err)
	}
	if parked != 0 {
		w.t.Errorf("%d events were parked", parked)
	}
}

// rec is one record of the topic.
type rec struct {
	id        uuid.UUID
	agg       string
	version   int64
	partition int32
	offset    int64
}

// readTopic reads the whole topic, up to the end offsets it has now, in
// offset order per partition.
func (w *world) readTopic() []rec {
	w.t.Helper()
	// A transactional relay's topic is read as a read_committed consumer
	// reads it.
	return w.readTopicAs(w.txn)
}

// readTopicAs is readTopic as a read_committed consumer (committed: up to
// the last stable offset, aborted records left out) or a read_uncommitted
// one (up to the high watermark, aborted records too).
func (w *world) readTopicAs(committed bool) []rec {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := []kgo.Opt{kgo.ConsumeTopics(w.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if w.txn {
		// Control records are kept to see the end, and skipped.
		opts = append(opts, kgo.KeepControlRecords())
	}
	cl := testkit.Client(w.t, w.brokers, opts...)
	list := kadm.NewClient(cl).ListEndOffsets
	if committed {
		list = kadm.NewClient(cl).ListCommittedOffsets
	}
	ends, err := list(ctx, w.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		w.t.Fatalf("listing end offsets: %v", err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		w.t.Fatal("the topic is empty")
	}
	byPart := map[int32][]rec{}
	next := map[int32]int64{}
	behind := func() bool {
		for p, end := range want {
			if next[p] < end {
				return true
			}
		}
		return false
	}
	for behind() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			w.t.Fatalf("reading the topic: at %v of %v", next, want)
		}
		fs.EachError(func(topic string, p int32, err error) {
			w.t.Logf("fetch %s/%d: %v (retrying)", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			var v int64
			fmt.Sscan(header(r, "eventline-aggregate-version"), &v)
			id, err := uuid.Parse(header(r, "eventline-event-id"))
			if err != nil {
				w.t.Errorf("record %d/%d: bad event id: %v", r.Partition, r.Offset, err)
			}
			byPart[r.Partition] = append(byPart[r.Partition], rec{id: id, agg: string(r.Key), version: v, partition: r.Partition, offset: r.Offset})
			next[r.Partition] = r.Offset + 1
		})
	}
	var out []rec
	for p := range int32(partitions) {
		out = append(out, byPart[p]...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// outcome is what verify found.
type outcome struct {
	records, unique, duplicates int
	committed, uncertain        int
	uncertainPublished          int
}

func (o outcome) String() string {
	return fmt.Sprintf("%d committed events (%d more of unknown outcome, %d of them published), %d records read, %d duplicates",
		o.committed, o.uncertain, o.uncertainPublished, o.records, o.duplicates)
}

// verify asserts the guarantees on the records read:
//   - no loss: every committed event is on the topic;
//   - nothing invented: every record is an event a writer appended;
//   - order: every aggregate sits on one partition, and the first
//     occurrences of its events there follow its versions (commit order).
//
// Duplicates (later occurrences) are allowed and counted.
func (w *world) verify(recs []rec) outcome {
	w.t.Helper()
	t := w.t
	l := &w.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	o := outcome{records: len(recs), committed: len(l.committed), uncertain: len(l.uncertain)}

	seen := map[uuid.UUID]rec{}
	part := map[string]int32{}
	last := map[string]rec{}
	var misordered, invented, wrong []string
	for _, r := range recs {
		if p, ok := part[r.agg]; ok && p != r.partition {
			t.Errorf("aggregate %s on partitions %d and %d", r.agg, p, r.partition)
		}
		part[r.agg] = r.partition
		if _, dup := seen[r.id]; dup {
			o.duplicates++
			continue
		}
		seen[r.id] = r
		ev, ok := l.committed[r.id]
		if !ok {
			if ev, ok = l.uncertain[r.id]; ok {
				o.uncertainPublished++
			}
		}
		switch {
		case !ok:
			invented = append(invented, fmt.Sprintf("%s (aggregate %s v%d at %d/%d)", r.id, r.agg, r.version, r.partition, r.offset))
		case ev.agg != r.agg || ev.version != r.version:
			wrong = append(wrong, fmt.Sprintf("%s: written as %s v%d, read as %s v%d", r.id, ev.agg, ev.version, r.agg, r.version))
		}
		if prev, ok := last[r.agg]; ok && r.version <= prev.version {
			misordered = append(misordered, fmt.Sprintf("aggregate %s: v%d first appears at %d/%d, after v%d at %d/%d",
				r.agg, r.version, r.partition, r.offset, prev.version, prev.partition, prev.offset))
		}
		last[r.agg] = r
	}
	o.unique = len(seen)

	var missing []string
	for id, ev := range l.committed {
		if _, ok := seen[id]; !ok {
			missing = append(missing, fmt.Sprintf("%s v%d (%s)", ev.agg, ev.version, id))
		}
	}
	sort.Strings(missing)
	report := func(what string, list []string) {
		if len(list) == 0 {
			return
		}
		shown := list
		if len(shown) > 50 {
			shown = shown[:50]
		}
		t.Errorf("%d %s:\n  %s", len(list), what, strings.Join(shown, "\n  "))
	}
	if w.txn && o.duplicates > 0 {
		t.Errorf("%d duplicates on a transactional relay's topic read committed, want none", o.duplicates)
	}
	report("committed events missing from the topic", missing)
	report("events out of order (first occurrences)", misordered)
	report("records of events no writer appended", invented)
	report("records whose aggregate or version differ from what was written", wrong)
	return o
}

// duration formats d for the reports.
func duration(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
