package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/devbroker"
	"github.com/eventline/eventline/internal/testkit"
)

// A failed startup ends Run with the error, promptly, even while other
// parts of the group (the other consumer, the dedupe expiry) would run until
// ctx ends.
func TestRunReturnsStartupErrors(t *testing.T) {
	e := newGroupEnv(t, 2)
	for _, tc := range []struct {
		name   string
		cfg    consumers.Config
		reason string
	}{
		{"source topic missing", consumers.Config{Topics: []string{testkit.UniqueName(t, "missing")}}, "does not exist"},
		// Both consumers' clients reject the option; the dedupe expiry
		// would run on.
		{"consumer options rejected", consumers.Config{CreateTopics: true, ConsumerOpts: []kgo.Opt{kgo.SessionTimeout(time.Millisecond)}}, "session timeout"},
		// No retry consumer: the source consumer fails alone.
		{"source consumer rejected, no retries", consumers.Config{CreateTopics: true, RetryDelays: []time.Duration{}, ConsumerOpts: []kgo.Opt{kgo.SessionTimeout(time.Millisecond)}}, "session timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Group = testkit.UniqueName(t, "g")
			if cfg.Topics == nil {
				cfg.Topics = []string{e.topic}
			}
			cfg.Brokers, cfg.DB, cfg.Serde, cfg.Logger = e.brokers, e.db, e.serde, testkit.Logger(t)
			cfg.Handler = recordingHandler(cfg.Group, nil)
			g, err := consumers.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			err = g.Run(ctx)
			if ctx.Err() != nil {
				t.Fatalf("Run returned only when its context ended (%v): %v", ctx.Err(), err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Run: %v, want an error saying %q", err, tc.reason)
			}
		})
	}
}

// A Group runs once: a second Run, while the first runs or after it
// returned, is refused.
func TestRunTwiceRefused(t *testing.T) {
	e := newGroupEnv(t, 1)
	g, stop := e.run(t, consumers.Config{Handler: recordingHandler("", nil)})
	testkit.WaitFor(t, 30*time.Second, "the group joined", func() bool { return g.Ready() == nil })
	if err := g.Run(context.Background()); !errors.Is(err, consumers.ErrAlreadyRunning) {
		t.Fatalf("second Run while running: %v, want ErrAlreadyRunning", err)
	}
	stop()
	if err := g.Run(context.Background()); !errors.Is(err, consumers.ErrAlreadyRunning) {
		t.Fatalf("Run after the first returned: %v, want ErrAlreadyRunning", err)
	}
}

// The broker stops answering (every request is swallowed) while a batch is
// in flight: Run still returns within ShutdownTimeout of the cancel, plus a
// small margin, although the final commit and the group leave never get an
// answer and the in-flight batch never finishes. When the broker answers
// again, a restarted member applies what was in flight, exactly once, and
// nothing applied before is applied again.
//
// kfake only: its Control hook is how a broker is made to read requests
// and never answer.
func TestRunReturnsWithinShutdownTimeoutWhenBrokerStopsAnswering(t *testing.T) {
	c, err := devbroker.New(devbroker.Options{}, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := newGroupEnvOn(t, c.ListenAddrs(), 2)
	stuck, stuckID := e.event(t, "stuck")
	entered := make(chan struct{})
	var once sync.Once
	handler := recordingHandler("", nil)
	const shutdown = 2 * time.Second
	var restarted atomic.Bool
	cfg := consumers.Config{Group: testkit.UniqueName(t, "g"), Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
		CreateTopics: true, RetryDelays: fastDelays, ShutdownTimeout: shutdown, Logger: testkit.Logger(t),
		// The member that could not leave is expired by its session.
		ConsumerOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)},
		Handler: func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
			if ev.ID == stuckID && !restarted.Load() { // holds its batch until the shutdown budget is spent
				once.Do(func() { close(entered) })
				<-ctx.Done()
				return ctx.Err()
			}
			return handler(ctx, tx, ev)
		}}
	g, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	// Applied events leave offsets marked but not yet committed.
	var recs []*kgo.Record
	for i := range 20 {
		r, _ := e.event(t, fmt.Sprintf("k%d", i))
		recs = append(recs, r)
	}
	e.produce(t, recs...)
	testkit.WaitFor(t, 30*time.Second, "events applied", func() bool { return e.count(t, `SELECT count(*) FROM applied`) == 20 })
	e.produce(t, stuck)
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck event was not handled within 30s")
	}
	// From now on the broker reads requests and never answers them,
	// until answering is set again.
	var answering atomic.Bool
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, nil, !answering.Load()
	})
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(shutdown + 30*time.Second):
		t.Fatalf("Run still running %v after cancel (ShutdownTimeout %v)", time.Since(start), shutdown)
	}
	took := time.Since(start)
	t.Logf("Run returned %v after cancel", took)
	if took > shutdown+2*time.Second { // closing the clients may take 1 s more
		t.Errorf("Run took %v after cancel, ShutdownTimeout is %v", took, shutdown)
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1`, stuckID); n != 0 {
		t.Fatalf("the abandoned event was applied (%d rows)", n)
	}

	// The broker answers again; a new member of the group takes over.
	answering.Store(true)
	restarted.Store(true)
	e.run(t, cfg)
	testkit.WaitFor(t, 60*time.Second, "the in-flight event applied after the restart", func() bool {
		return e.count(t, `SELECT count(*) FROM applied WHERE event_id = $1`, stuckID) == 1
	})
	if n := e.count(t, `SELECT count(*) FROM applied WHERE n <> 1`); n != 0 {
		t.Errorf("%d events applied more than once across the restart", n)
	}
	if n := e.count(t, `SELECT count(*) FROM applied`); n != 21 {
		t.Errorf("%d events applied, want 21", n)
	}
}

// Live, the liveness probe's answer: an error before Run, nil while the
// loops turn (an idle group too), an error naming the group once a handler
// has not returned for the liveness window, nil again when it returns, an
// error after Run returned.
func TestLiveWhileTheLoopsTurn(t *testing.T) {
	defer consumers.SetLivenessWindow(time.Second)()
	e := newGroupEnv(t, 1)
	release := make(chan struct{})
	var blocked atomic.Bool
	g, stop := e.run(t, consumers.Config{Handler: func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
		if string(ev.Key) == "stuck" && !blocked.Swap(true) {
			<-release
		}
		return nil
	}})
	testkit.WaitFor(t, 60*time.Second, "the group joined and live", func() bool { return g.Ready() == nil && g.Live() == nil })
	r, _ := e.event(t, "stuck")
	e.produce(t, r)
	testkit.WaitFor(t, 60*time.Second, "Live reports the stuck handler", func() bool {
		err := g.Live()
		return err != nil && strings.Contains(err.Error(), "no poll for")
	})
	close(release)
	testkit.WaitFor(t, 60*time.Second, "live again once the handler returned", func() bool { return g.Live() == nil })
	stop()
	if err := g.Live(); err == nil {
		t.Error("Live after Run returned = nil")
	}
	idle, err := consumers.New(consumers.Config{Group: "g", Topics: []string{"t"}, Brokers: e.brokers, DB: e.db, Serde: e.serde, Handler: func(context.Context, pgx.Tx, *consumers.Event) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Live(); err == nil {
		t.Error("Live before Run = nil")
	}
}
