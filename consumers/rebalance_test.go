package consumers_test

import (
	"context"
	"fmt"
	"slices"
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

// Three consumers join and leave while events flow: every event
// applied exactly once, none missing, and no member processes a partition
// after it was revoked from it. Under each group protocol: the classic
// one (cooperative-sticky) and KIP-848's, which both brokers of the suite
// offer (the test fails if the cluster answers with another protocol).
func TestRebalancesExactlyOnce(t *testing.T) {
	for _, proto := range []consumers.Protocol{consumers.ProtocolClassic, consumers.ProtocolConsumer} {
		t.Run(string(proto), func(t *testing.T) { rebalancesExactlyOnce(t, proto) })
	}
}

func rebalancesExactlyOnce(t *testing.T, proto consumers.Protocol) {
	e := newGroupEnv(t, 6)
	var produced atomic.Int64
	var loadErr atomic.Pointer[error]
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		// About 10,000 events/s until every membership change below is
		// done, so that each happens while events flow (load shaping, not
		// synchronisation: the steps wait for what members applied).
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
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
	}()
	defer func() {
		select {
		case <-stopLoad:
		default:
			close(stopLoad)
		}
		<-loadDone
	}()
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
	groups := make([]*consumers.Group, 3)
	startMember := func(i int) {
		cfg := members[i].config(group, nil)
		cfg.Protocol = proto
		groups[i], stops[i] = e.run(t, cfg)
	}
	// more waits until n more events were applied since the call, and
	// member i (when >= 0) applied some.
	more := func(what string, n int64, i int) {
		from := applied()
		testkit.WaitFor(t, 60*time.Second, what, func() bool {
			return applied() >= from+n && (i < 0 || members[i].applied.Load() > 0)
		})
	}
	startMember(0)
	more("20k applied by one member", 20_000, 0)
	startMember(1)
	more("the second member applies", 10_000, 1)
	startMember(2)
	more("the third member applies", 10_000, 2)
	stops[0]()
	more("10k more after the first member left", 10_000, -1)
	stops[1]()
	more("10k more after the second member left", 10_000, -1)
	close(stopLoad)
	<-loadDone
	testkit.WaitFor(t, 120*time.Second, "all applied", func() bool { return applied() == produced.Load() })

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
		if p := groups[i].Stats().Protocol; p != proto {
			t.Errorf("member %d ran protocol %q, want %q", i, p, proto)
		}
		t.Logf("member %d applied %d", i, m.applied.Load())
	}
}

// A static member (InstanceID) that stops and comes back under the same id
// before its session times out takes its own partitions back: the other
// member is neither revoked nor assigned a partition meanwhile, the returning member owns what it owned before, and every
// event is applied once. Static members run the classic protocol (see
// Config.InstanceID: auto picks it for them, New refuses them with KIP-848).
func TestStaticMemberRestartIsNoRebalance(t *testing.T) {
	proto := consumers.ProtocolAuto
	e := newGroupEnv(t, 6)
	group := testkit.UniqueName(t, "g")
	var changes [2]atomic.Int64 // assignment callbacks per member after it settled
	owned := func(m *member) []int32 {
		m.mu.Lock()
		defer m.mu.Unlock()
		var ps []int32
		for p := range m.owned {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		return ps
	}
	start := func(m *member, id string, n *atomic.Int64) (*consumers.Group, func()) {
		cfg := m.config(group, nil)
		cfg.Protocol, cfg.InstanceID = proto, id
		assigned, revoked := cfg.OnAssigned, cfg.OnRevoked
		// Cooperative rebalances call back with empty maps too: only a
		// partition that moves counts.
		cfg.OnAssigned = func(a map[string][]int32) {
			assigned(a)
			if len(a) > 0 {
				n.Add(1)
			}
		}
		cfg.OnRevoked = func(r map[string][]int32) {
			revoked(r)
			if len(r) > 0 {
				n.Add(1)
			}
		}
		return e.run(t, cfg)
	}
	produce := func(n int) {
		batch := make([]*kgo.Record, 0, n)
		for i := 0; i < n; i++ {
			r, _ := e.event(t, fmt.Sprintf("agg%d", i))
			batch = append(batch, r)
		}
		e.produce(t, batch...)
	}
	applied := func() int64 { return e.count(t, `SELECT count(*) FROM applied`) }

	a, b := &member{}, &member{}
	_, stopA := start(a, "member-a", &changes[0])
	_, stopB := start(b, "member-b", &changes[1])
	defer stopB()
	testkit.WaitFor(t, 60*time.Second, "both members own partitions, six in all", func() bool {
		return len(owned(a)) > 0 && len(owned(b)) > 0 && len(owned(a))+len(owned(b)) == 6
	})
	produce(1000)
	testkit.WaitFor(t, 60*time.Second, "1000 applied", func() bool { return applied() == 1000 })
	beforeA, beforeB := owned(a), owned(b)
	changes[1].Store(0)

	stopA() // Run returns; a static member does not leave its group
	a2 := &member{}
	var changesA2 atomic.Int64
	g2, stopA2 := start(a2, "member-a", &changesA2)
	defer stopA2()
	produce(1000)
	testkit.WaitFor(t, 60*time.Second, "2000 applied", func() bool { return applied() == 2000 })

	if got := owned(a2); !slices.Equal(got, beforeA) {
		t.Errorf("the returning member owns %v, it owned %v", got, beforeA)
	}
	if n := changes[1].Load(); n != 0 || !slices.Equal(owned(b), beforeB) {
		t.Errorf("the other member saw %d assignment changes (owns %v, owned %v): the restart moved its partitions", n, owned(b), beforeB)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once", n)
	}
	if v := a.violations.Load() + a2.violations.Load() + b.violations.Load(); v != 0 {
		t.Errorf("%d events processed on partitions their member did not own", v)
	}
	if p := g2.Stats().Protocol; p != consumers.ProtocolClassic {
		t.Errorf("a static member ran protocol %q, want classic", p)
	}
}
