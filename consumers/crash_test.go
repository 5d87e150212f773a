package consumers_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/consumers"
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
	killAfter, _ := strconv.Atoi(os.Getenv("CHILD_KILL_AFTER"))
	var batches atomic.Int64
	g, err := consumers.New(consumers.Config{
		Group: os.Getenv("CHILD_GROUP"), Topics: []string{os.Getenv("CHILD_TOPIC")},
		Brokers: strings.Split(os.Getenv("CHILD_BROKERS"), ","), DB: db, Serde: schemas.NewSerde(reg),
		BatchHandler: batchRecorder, MaxPollRecords: 500,
		// A SIGKILLed member stays in the group until its session times
		// out; the shortest timeout brokers accept keeps the test short.
		ConsumerOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)},
		AfterApply: func(results []consumers.Result) {
			dups := 0
			for _, r := range results {
				if r.Outcome == consumers.Duplicate {
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
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := g.Run(ctx); err != nil {
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
