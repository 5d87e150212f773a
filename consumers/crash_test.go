package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

// childEnv makes the test binary run one consumer (consumerChild) instead
// of the tests: the SIGKILL test needs a process to kill.
const childEnv = "EVENTLINE_TEST_CONSUMER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(consumerChild())
	}
	testkit.Main(m)
}

// batchRecorder is recordingHandler's set-based form: one statement per batch.
func batchRecorder(ctx context.Context, tx pgx.Tx, evs []*consumers.Event) error {
	ids := make([]string, len(evs))
	keys := make([]string, len(evs))
	for i, ev := range evs {
		ids[i], keys[i] = ev.ID.String(), ev.AggregateID
	}
	_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, attempt) SELECT id, k, 0 FROM unnest($1::uuid[], $2::text[]) AS t(id, k)
		ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ids, keys)
	return err
}

// consumerChild runs a group until SIGTERM, or kills itself with SIGKILL
// right after the transaction of its KILL_AFTER-th batch commits, before
// that batch's offsets are marked or committed.
func consumerChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := pgxpool.New(ctx, os.Getenv("CHILD_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	reg, err := sr.NewClient(sr.URLs(os.Getenv("CHILD_REGISTRY")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if os.Getenv("CHILD_MODE") == "churn" {
		return runChild(ctx, nil, churnConfig(os.Getenv("CHILD_GROUP"), os.Getenv("CHILD_TOPIC"), strings.Split(os.Getenv("CHILD_BROKERS"), ","), db, schemas.NewSerde(reg)))
	}
	killAfter, _ := strconv.Atoi(os.Getenv("CHILD_KILL_AFTER"))
	var batches atomic.Int64
	return runChild(ctx, func(results []hook.Result) {
		dups := 0
		for _, r := range results {
			if r.Outcome == hook.Duplicate {
				dups++
			}
		}
		if dups > 0 {
			_, _ = db.Exec(context.Background(), `UPDATE redelivered SET n = n + $1`, dups)
		}
		if killAfter > 0 && batches.Add(1) == int64(killAfter) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}, consumers.Config{
		Group: os.Getenv("CHILD_GROUP"), Topics: []string{os.Getenv("CHILD_TOPIC")},
		Brokers: strings.Split(os.Getenv("CHILD_BROKERS"), ","), DB: db, Serde: schemas.NewSerde(reg),
		BatchHandler: batchRecorder, MaxPollRecords: 500,
		// A SIGKILLed member stays in the group until its session times
		// out; the shortest timeout brokers accept keeps the test short.
		ConsumerOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)},
	})
}

// runChild runs a group (seeing its batches with after, when set) until
// ctx ends; the exit code of the child.
func runChild(ctx context.Context, after func([]hook.Result), cfg consumers.Config) int {
	g, err := consumers.New(cfg)
	if err == nil {
		if after != nil {
			hook.AfterApply(g, after)
		}
		err = g.Run(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A consumer SIGKILLed after its apply transaction commits and before its
// offsets commit, five times while events keep arriving: every event's
// effect exactly once, and the redelivered ones were recognised.
func TestSIGKILLBetweenApplyAndCommit(t *testing.T) {
	e := newGroupEnv(t, 3)
	cfg := e.db.Config().ConnConfig.ConnString()
	if _, err := e.db.Exec(context.Background(), `CREATE TABLE redelivered (n bigint NOT NULL); INSERT INTO redelivered VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	group := testkit.UniqueName(t, "g")
	// Preflight creates the retry topics once, so children start alike.
	g, err := consumers.New(consumers.Config{Group: group, Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde, BatchHandler: batchRecorder, CreateTopics: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Preflight(context.Background()); err != nil {
		t.Fatal(err)
	}

	const total = 20000
	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Go(func() { // load: events keep arriving while children die
		for produced.Load() < total {
			var batch []*kgo.Record
			for i := 0; i < 500; i++ {
				r, _ := e.event(t, fmt.Sprintf("agg%d", rand.IntN(300)))
				batch = append(batch, r)
			}
			if err := e.prod.ProduceSync(context.Background(), batch...).FirstErr(); err != nil {
				loadErr.Store(&err)
				return
			}
			produced.Add(int64(len(batch)))
		}
	})
	defer wg.Wait()

	start := func(killAfter int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_DB="+cfg, "CHILD_REGISTRY="+e.regURL,
			"CHILD_BROKERS="+strings.Join(e.brokers, ","), "CHILD_TOPIC="+e.topic, "CHILD_GROUP="+group,
			"CHILD_KILL_AFTER="+strconv.Itoa(killAfter))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd
	}
	for i := range 5 {
		cmd := start(2 + rand.IntN(4))
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child %d: want death by SIGKILL, got %v", i, err)
		}
	}
	cmd := start(0)
	testkit.WaitFor(t, 120*time.Second, "every event applied", func() bool {
		if p := loadErr.Load(); p != nil {
			t.Fatalf("producing load: %v", *p)
		}
		return produced.Load() >= total && e.count(t, `SELECT count(*) FROM applied`) == produced.Load()
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if n := e.count(t, `SELECT count(*) FROM eventline_consumer_dedupe WHERE group_id = $1`, group); n != produced.Load() {
		t.Errorf("%d dedupe rows for %d events", n, produced.Load())
	}
	red := e.count(t, `SELECT n FROM redelivered`)
	if red == 0 {
		t.Errorf("no record was delivered again after a kill: the test did not hit the window between apply and commit")
	}
	t.Logf("%d events, 5 SIGKILLs, %d redelivered records skipped as duplicates", produced.Load(), red)
}

// churnDelays are the retry delays of the churn test's group.
var churnDelays = []time.Duration{200 * time.Millisecond, 500 * time.Millisecond, time.Second}

// churnFails: the first attempt of about one event in 64 fails (it is
// applied from retry.1), so the retry chain and key order stay busy.
func churnFails(ev *consumers.Event) bool { return ev.ID[0]%64 == 0 && ev.Attempt == 0 }

// churnConfig is the group every churn process runs.
func churnConfig(group, topic string, brokers []string, db *pgxpool.Pool, serde *schemas.Serde) consumers.Config {
	return consumers.Config{
		Group: group, Topics: []string{topic}, Brokers: brokers, DB: db, Serde: serde,
		KeyOrder: true, RetryDelays: churnDelays, MaxPollRecords: 500,
		Handler: func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
			if churnFails(ev) {
				return errors.New("transient failure (test)")
			}
			_, _, off := ev.Origin()
			_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, attempt, src_offset) VALUES ($1, $2, $3, $4)
				ON CONFLICT (event_id) DO UPDATE SET n = applied.n + 1`, ev.ID, ev.AggregateID, ev.Attempt, off)
			return err
		},
		ConsumerOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)},
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// Three consumer processes of one group, one SIGKILLed at a random moment
// every 0.2-1 s (mid-batch, mid-join, mid-sync: kills come faster than
// rebalances settle) and restarted at once, while events arrive and about
// one in 64 fails its first attempt (key order on, so its key's later
// events follow it through the retry chain). After the last kill the group
// drains everything within drainBound, every event applied exactly once,
// each key's events in their source order, nothing dead-lettered, and the
// chain empty. On the embedded broker this is what devbroker's guard
// makes true: without it the group wedged for minutes.
func TestSIGKILLedMembersUnderLoadDrain(t *testing.T) {
	const (
		total      = 12000
		kills      = 15
		drainBound = 40 * time.Second // session timeout 6 s, retry delays up to 1 s, a few rebalances
	)
	e := newGroupEnv(t, 6)
	ctx := context.Background()
	if _, err := e.db.Exec(ctx, `ALTER TABLE applied ADD COLUMN src_offset bigint`); err != nil {
		t.Fatal(err)
	}
	group := testkit.UniqueName(t, "g")
	cfg := churnConfig(group, e.topic, e.brokers, e.db, e.serde)
	cfg.CreateTopics, cfg.Logger = true, testkit.Logger(t)
	g, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Preflight(ctx); err != nil {
		t.Fatal(err)
	}

	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Go(func() { // about 3,000 events/s over 40 keys
		for produced.Load() < total {
			var batch []*kgo.Record
			for range 300 {
				r, _ := e.event(t, fmt.Sprintf("agg%d", rand.IntN(40)))
				batch = append(batch, r)
			}
			if err := e.prod.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				loadErr.Store(&err)
				return
			}
			produced.Add(int64(len(batch)))
			time.Sleep(100 * time.Millisecond) // pacing the load, not synchronisation
		}
	})
	defer wg.Wait()

	dsn := e.db.Config().ConnConfig.ConnString()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_MODE=churn", "CHILD_DB="+dsn, "CHILD_REGISTRY="+e.regURL,
			"CHILD_BROKERS="+strings.Join(e.brokers, ","), "CHILD_TOPIC="+e.topic, "CHILD_GROUP="+group)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd
	}
	procs := []*exec.Cmd{start(), start(), start()}
	for range kills {
		time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond) // a random moment of the group's life
		i := rand.IntN(len(procs))
		if err := procs[i].Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := procs[i].Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("consumer process: want death by SIGKILL, got %v", err)
		}
		procs[i] = start()
	}
	wg.Wait() // the load has ended
	if p := loadErr.Load(); p != nil {
		t.Fatalf("producing load: %v", *p)
	}
	lastKill := time.Now()
	applied := int64(0)
	for applied != produced.Load() {
		if time.Since(lastKill) > drainBound {
			t.Fatalf("%d of %d events applied %s after the last kill", applied, produced.Load(), drainBound)
		}
		time.Sleep(100 * time.Millisecond)
		applied = e.count(t, `SELECT count(*) FROM applied`)
	}
	drained := time.Since(lastKill)
	for _, cmd := range procs {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Errorf("graceful stop: %v", err)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if n := e.count(t, `SELECT count(*) FROM (SELECT src_offset < lag(src_offset) OVER (PARTITION BY key ORDER BY seq) AS back FROM applied) o WHERE back`); n != 0 {
		t.Errorf("%d events applied before an earlier event of their key", n)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE attempt > 0`); n == 0 {
		t.Error("no event was applied from a retry topic: the chain was not exercised")
	}
	if n := e.count(t, `SELECT count(*) FROM eventline_consumer_chain WHERE group_id = $1`, group); n != 0 {
		t.Errorf("%d chain rows left behind", n)
	}
	adm := kadm.NewClient(testkit.Client(t, e.brokers))
	ends, err := adm.ListEndOffsets(ctx, consumers.DLTTopic(e.topic, group))
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("DLT partition %d holds %d records", o.Partition, o.Offset)
		}
	})
	t.Logf("%d events, %d SIGKILLs of 3 processes; drained %.1fs after the last kill (bound %s); %d applied from a retry topic",
		produced.Load(), kills, drained.Seconds(), drainBound, e.count(t, `SELECT count(*) FROM applied WHERE attempt > 0`))
}
