package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
)

// BenchmarkKeyOrderCost measures what key order costs when events fail:
// 5,000 events at 1,000/s on one partition over few or many keys, 1 % of
// them failing their first attempt (applied from retry.1), the default
// retry delays (1 s, 10 s, 1 min). Reported per run:
//
//   - via-retry/event: the share of events applied from a retry topic
//     (the failed ones and those deferred behind them);
//   - p50-ms, p99-ms: source produce to apply, over the events that never
//     failed (what a deferral adds to a healthy event);
//   - failed/event: the share that failed (the cause).
//
// Run: go test -run '^$' -bench KeyOrderCost -benchtime 1x ./consumers
func BenchmarkKeyOrderCost(b *testing.B) {
	for _, keys := range []int{4, 64} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			for range b.N {
				keyOrderRun(b, keys)
			}
		})
	}
}

func keyOrderRun(b *testing.B, keys int) {
	const (
		total = 5000
		rate  = 1000 // per second
	)
	e := newGroupEnv(b, 1)
	ctx := context.Background()
	if _, err := e.db.Exec(ctx, `ALTER TABLE applied ADD COLUMN latency_ms bigint, ADD COLUMN failed bool NOT NULL DEFAULT false`); err != nil {
		b.Fatal(err)
	}
	fails := func(ev *consumers.Event) bool { return ev.ID[1]%100 == 0 }
	cfg := consumers.Config{Topics: []string{e.topic}, KeyOrder: true, RetryDelays: pipeline.DefaultRetryDelays,
		Handler: func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
			if fails(ev) && ev.Attempt == 0 {
				return errors.New("first attempt fails (benchmark)")
			}
			sent, _ := strconv.ParseInt(ev.Headers["bench-sent"], 10, 64)
			_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, key, attempt, latency_ms, failed) VALUES ($1, $2, $3, $4, $5)`,
				ev.ID, ev.AggregateID, ev.Attempt, time.Now().UnixMilli()-sent, fails(ev))
			return err
		}}
	e.run(b, cfg)
	b.ResetTimer()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; sent < total; sent += rate / 20 {
		<-tick.C
		batch := make([]*kgo.Record, 0, rate/20)
		for range rate / 20 {
			r, _ := e.event(b, fmt.Sprintf("k%d", rand.IntN(keys)))
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "bench-sent", Value: []byte(strconv.FormatInt(time.Now().UnixMilli(), 10))})
			batch = append(batch, r)
		}
		e.produce(b, batch...)
	}
	testkit.WaitFor(b, 3*time.Minute, "every event applied", func() bool { return e.count(b, `SELECT count(*) FROM applied`) == total })
	b.StopTimer()
	rows, err := e.db.Query(ctx, `SELECT latency_ms FROM applied WHERE NOT failed`)
	if err != nil {
		b.Fatal(err)
	}
	lat, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(e.count(b, `SELECT count(*) FROM applied WHERE attempt > 0`))/total, "via-retry/event")
	b.ReportMetric(float64(e.count(b, `SELECT count(*) FROM applied WHERE failed`))/total, "failed/event")
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ms")
}
