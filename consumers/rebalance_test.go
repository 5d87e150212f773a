package consumers_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
)

// member is one consumer of the group, with the partitions it owns as its
// callbacks report them.
type member struct {
	mu         sync.Mutex
	owned      map[int32]bool
	violations atomic.Int64 // events of partitions it did not own
	applied    atomic.Int64
}

func (m *member) config(group string, stop <-chan struct{}) consumers.Config {
	m.owned = map[int32]bool{}
	return consumers.Config{
		Group: group, MaxPollRecords: 2000,
		OnAssigned: func(a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, ps := range a {
				for _, p := range ps {
					m.owned[p] = true
				}
			}
		},
		OnRevoked: func(r map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, ps := range r {
				for _, p := range ps {
					delete(m.owned, p)
				}
			}
		},
		BatchHandler: func(ctx context.Context, tx pgx.Tx, evs []*consumers.Event) error {
			m.mu.Lock()
			for _, ev := range evs {
				if !m.owned[ev.Partition] {
					m.violations.Add(1)
				}
			}
			m.mu.Unlock()
			m.applied.Add(int64(len(evs)))
			return batchRecorder(ctx, tx, evs)
		},
	}
}

// Three consumers join and leave while 100,000 events flow: every event
// applied exactly once, none missing, and no member processes a partition
// after it was revoked from it.
func TestRebalancesExactlyOnce(t *testing.T) {
	e := newGroupEnv(t, 6)
	const total = 100_000
	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// About 10,000 events/s, so that the membership changes below
		// happen while events flow (load shaping, not synchronisation).
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for produced.Load() < total {
			<-tick.C
			batch := make([]*kgo.Record, 0, 1000)
			for i := 0; i < 1000; i++ {
				r, _ := e.event(t, fmt.Sprintf("agg%d", (int(produced.Load())+i)%5000))
				batch = append(batch, r)
			}
			if err := e.prod.ProduceSync(context.Background(), batch...).FirstErr(); err != nil {
				loadErr.Store(&err)
				return
			}
			produced.Add(int64(len(batch)))
		}
	})
	applied := func() int64 {
		if p := loadErr.Load(); p != nil {
			t.Fatalf("producing load: %v", *p)
		}
		return e.count(t, `SELECT count(*) FROM applied`)
	}
	group := testkit.UniqueName(t, "g")
	members := make([]*member, 3)
	stops := make([]func(), 3)
	for i := range members {
		members[i] = &member{}
	}
	startMember := func(i int) {
		_, stops[i] = e.run(t, members[i].config(group, nil))
	}
	startMember(0)
	testkit.WaitFor(t, 60*time.Second, "20k applied by one member", func() bool { return applied() >= 20_000 })
	startMember(1)
	testkit.WaitFor(t, 60*time.Second, "40k applied", func() bool { return applied() >= 40_000 && members[1].applied.Load() > 0 })
	startMember(2)
	testkit.WaitFor(t, 60*time.Second, "60k applied", func() bool { return applied() >= 60_000 && members[2].applied.Load() > 0 })
	stops[0]()
	testkit.WaitFor(t, 60*time.Second, "75k applied", func() bool { return applied() >= 75_000 })
	stops[1]()
	testkit.WaitFor(t, 120*time.Second, "all applied", func() bool { return produced.Load() == total && applied() == total })

	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	for i, m := range members {
		if v := m.violations.Load(); v != 0 {
			t.Errorf("member %d processed %d events of partitions it did not own", i, v)
		}
		if m.applied.Load() == 0 {
			t.Errorf("member %d applied nothing: the group never rebalanced onto it", i)
		}
		t.Logf("member %d applied %d", i, m.applied.Load())
	}
}
