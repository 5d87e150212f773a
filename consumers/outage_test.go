package consumers_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/migrate"
)

// PostgreSQL restarted twice (fast, then immediate shutdown) while the
// group applies a steady stream: every event applied exactly once, and
// none sent to the retry chain or the DLT — a database outage is not the
// events' fault.
func TestPostgresRestartExactlyOnce(t *testing.T) {
	pg := testkit.RestartablePostgres(t)
	e := newGroupEnv(t, 3)
	// The group's database is the restartable one, not the shared cluster.
	ctx := context.Background()
	db, err := pgxpool.New(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := migrate.Migrate(ctx, db, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `CREATE TABLE applied (event_id uuid PRIMARY KEY, key text NOT NULL, grp text NOT NULL DEFAULT '',
		attempt int NOT NULL, seq bigserial, n int NOT NULL DEFAULT 1, early_ms bigint NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	e.db = db

	const total = 6000
	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond) // about 2,000 events/s
		defer tick.Stop()
		for produced.Load() < total {
			<-tick.C
			batch := make([]*kgo.Record, 0, 100)
			for i := range 100 {
				r, _ := e.event(t, fmt.Sprintf("agg%d", (int(produced.Load())+i)%500))
				batch = append(batch, r)
			}
			if err := e.prod.ProduceSync(context.Background(), batch...).FirstErr(); err != nil {
				loadErr.Store(&err)
				return
			}
			produced.Add(int64(len(batch)))
		}
	})
	g, _ := e.run(t, consumers.Config{RetryDelays: fastDelays, Handler: recordingHandler("", nil), MaxBackoff: 500 * time.Millisecond})
	applied := func() int64 {
		if p := loadErr.Load(); p != nil {
			t.Fatalf("producing load: %v", *p)
		}
		return g.Stats().Applied
	}
	for i, immediate := range []bool{false, true} {
		testkit.WaitFor(t, 60*time.Second, "applying before the restart", func() bool { return applied() >= int64(1000*(i+1)) })
		pg.Restart(t, immediate, time.Second)
	}
	testkit.WaitFor(t, 120*time.Second, "every event applied after the restarts", func() bool {
		return produced.Load() == total && e.count(t, `SELECT count(*) FROM applied`) == total
	})
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if st := g.Stats(); st.Retried != 0 || st.DeadLettered != 0 {
		t.Errorf("stats %+v: the outage sent events to the retry chain or the DLT", st)
	}
}

// The broker stopped for 5 s and restarted while the group applies a
// steady stream: every event applied exactly once, none retried.
func TestBrokerRestartExactlyOnce(t *testing.T) {
	brokers, restart := testkit.RestartableKafka(t)
	e := newGroupEnvOn(t, brokers, 3)
	const total = 4000
	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for produced.Load() < total {
			<-tick.C
			batch := make([]*kgo.Record, 0, 100)
			for i := range 100 {
				r, _ := e.event(t, fmt.Sprintf("agg%d", (int(produced.Load())+i)%500))
				batch = append(batch, r)
			}
			// The producer's own retries ride out the outage.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := e.prod.ProduceSync(ctx, batch...).FirstErr()
			cancel()
			if err != nil {
				loadErr.Store(&err)
				return
			}
			produced.Add(int64(len(batch)))
		}
	})
	g, _ := e.run(t, consumers.Config{RetryDelays: fastDelays, BatchHandler: batchRecorder})
	testkit.WaitFor(t, 60*time.Second, "applying before the restart", func() bool {
		if p := loadErr.Load(); p != nil {
			t.Fatalf("producing load: %v", *p)
		}
		return g.Stats().Applied >= 1000
	})
	restart(5 * time.Second)
	testkit.WaitFor(t, 120*time.Second, "every event applied after the restart", func() bool {
		if p := loadErr.Load(); p != nil {
			t.Fatalf("producing load: %v", *p)
		}
		return produced.Load() == total && e.count(t, `SELECT count(*) FROM applied`) == total
	})
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if st := g.Stats(); st.Retried != 0 || st.DeadLettered != 0 {
		t.Errorf("stats %+v: the outage sent events to the retry chain or the DLT", st)
	}
}
