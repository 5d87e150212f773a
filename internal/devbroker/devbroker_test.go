package devbroker_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/eventline/eventline/internal/devbroker"
	"github.com/eventline/eventline/internal/testkit"
)

// dyingDialer hands out connections until it is killed; then it closes
// them and refuses more: to the broker, the process is gone (SIGKILL).
type dyingDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func (d *dyingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("process killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *dyingDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		c.Close()
	}
}

const session = 6 * time.Second

// A member whose connections die while its JoinGroup is parked must not
// hold the group: the member that joins next is assigned within the
// session timeout plus a few seconds, on kfake (with the guard) as on
// Apache Kafka. Without the guard, kfake took 65 s here (the rebalance
// timeout, reset by every rejoin).
func TestMemberDeadMidJoinDoesNotStallTheGroup(t *testing.T) {
	var seeds []string
	var b *devbroker.Broker
	if testkit.RealKafka() {
		seeds = testkit.Kafka(t)
	} else {
		var err error
		b, err = devbroker.New(devbroker.Options{Logger: testkit.Logger(t)}, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		seeds = b.ListenAddrs()
	}
	topic := testkit.Topic(t, seeds, 3)
	group := testkit.UniqueName(t, "g")

	assigned := make(chan string, 64)
	member := func(name string, dial func(context.Context, string, string) (net.Conn, error)) *kgo.Client {
		opts := []kgo.Opt{
			kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.SessionTimeout(session), kgo.HeartbeatInterval(500 * time.Millisecond), kgo.RebalanceTimeout(60 * time.Second),
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { assigned <- name }),
		}
		if dial != nil {
			opts = append(opts, kgo.Dialer(dial))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cl.AllowRebalance() // a client blocking rebalances cannot leave the group
			cl.Close()
		})
		return cl
	}
	poll := func(cl *kgo.Client, d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		cl.PollFetches(ctx)
		cancel()
		cl.AllowRebalance()
	}
	waitAssigned := func(who string, within time.Duration, pollers ...*kgo.Client) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < within {
			for _, cl := range pollers {
				poll(cl, 100*time.Millisecond)
			}
			for {
				select {
				case n := <-assigned:
					if n == who {
						return time.Since(start)
					}
					continue
				default:
				}
				break
			}
		}
		t.Fatalf("%s not assigned within %s", who, within)
		return 0
	}

	a := member("A", nil)
	waitAssigned("A", 30*time.Second, a)
	// A holds a poll and does not allow a rebalance: it cannot rejoin, so
	// B's JoinGroup stays parked at the coordinator.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	a.PollFetches(ctx)
	cancel()
	var d dyingDialer
	bcl := member("B", d.DialContext)
	go bcl.PollFetches(context.Background())
	// B's JoinGroup (with its member id) is parked once the coordinator
	// rebalances with two members.
	adm := kadm.NewClient(testkit.Client(t, seeds))
	testkit.WaitFor(t, 30*time.Second, "group rebalancing with B's join", func() bool {
		gs, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false
		}
		g := gs[group]
		return g.State == "PreparingRebalance" && len(g.Members) == 2
	})
	d.kill()
	died := time.Now()

	// A rejoins: the join completes with B in it (B's answer cannot be
	// delivered) and B is given partitions. Then C joins. The group must end Stable with A and C
	// owning every partition, within B's session timeout plus a few
	// seconds: no member may keep B's share.
	a.AllowRebalance()
	waitAssigned("A", 30*time.Second, a) // the rebalance with B in it completed
	c := member("C", nil)
	stop := make(chan struct{})
	var polling sync.WaitGroup
	for _, cl := range []*kgo.Client{a, c} {
		polling.Add(1)
		go func() {
			defer polling.Done()
			for {
				select {
				case <-stop:
					return
				default:
					poll(cl, 100*time.Millisecond)
				}
			}
		}()
	}
	defer func() { close(stop); polling.Wait() }()
	limit := session + 6*time.Second
	var last kadm.DescribedGroup
	for {
		gs, err := adm.DescribeGroups(context.Background(), group)
		if err == nil {
			last = gs[group]
			if owned := ownedPartitions(last); last.State == "Stable" && len(last.Members) == 2 && owned == 3 {
				break
			}
		}
		if time.Since(died) > limit {
			t.Fatalf("%s after B died the group is %s with %d members: want Stable with A and C owning the 3 partitions",
				time.Since(died).Round(time.Millisecond), last.State, len(last.Members))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("group Stable with A and C owning all partitions %.1fs after B died (session timeout %s)", time.Since(died).Seconds(), session)
	if b != nil && b.Removed() != 1 {
		t.Errorf("guard removed %d members, want 1 (B)", b.Removed())
	}
}

func ownedPartitions(g kadm.DescribedGroup) int {
	var n int
	for _, m := range g.Members {
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				n += len(t.Partitions)
			}
		}
	}
	return n
}

// Wrong credentials get SASL_AUTHENTICATION_FAILED, as from Apache Kafka,
// so a client fails at once instead of retrying what looks like a broken
// connection (kfake alone closes the connection: EOF). Right ones still
// work, for PLAIN and SCRAM.
func TestWrongCredentialsRefusedNotHungUp(t *testing.T) {
	b, err := devbroker.New(devbroker.Options{ClientOpts: []kgo.Opt{kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism())}},
		kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"), kfake.User("PLAIN", "p", "p-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	for name, tc := range map[string]struct {
		mech sasl.Mechanism
		ok   bool
	}{
		"PLAIN right":          {plain.Auth{User: "p", Pass: "p-pw"}.AsMechanism(), true},
		"PLAIN wrong":          {plain.Auth{User: "p", Pass: "nope"}.AsMechanism(), false},
		"SCRAM-SHA-256 right":  {scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism(), true},
		"SCRAM-SHA-256 wrong":  {scram.Auth{User: "admin", Pass: "nope"}.AsSha256Mechanism(), false},
		"SCRAM-SHA-256 nobody": {scram.Auth{User: "nobody", Pass: "nope"}.AsSha256Mechanism(), false},
	} {
		t.Run(name, func(t *testing.T) {
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.ListenAddrs()...), kgo.SASL(tc.mech))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = cl.Ping(ctx)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("ping: %v", err)
			case !tc.ok && !errors.Is(err, kerr.SaslAuthenticationFailed):
				t.Fatalf("ping with wrong credentials: %v, want SASL_AUTHENTICATION_FAILED", err)
			}
		})
	}
}
