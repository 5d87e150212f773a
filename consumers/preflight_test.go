package consumers_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/testkit"
)

// Without CreateTopics, a missing retry/DLT topic or one with fewer
// partitions than its source is a startup error naming it; with it, the
// topics are created with the source's partition count.
func TestPreflight(t *testing.T) {
	e := newGroupEnv(t, 4)
	group := testkit.UniqueName(t, "g")
	cfg := consumers.Config{Group: group, Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
		Handler: recordingHandler(group, nil), RetryDelays: fastDelays[:2]}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = g.Preflight(ctx)
	if err == nil || !strings.Contains(err.Error(), consumers.RetryTopic(e.topic, group, 1)+" does not exist") ||
		!strings.Contains(err.Error(), consumers.DLTTopic(e.topic, group)) {
		t.Fatalf("missing topics: got %v", err)
	}
	adm := kadm.NewClient(testkit.Client(t, e.brokers))
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, consumers.RetryTopic(e.topic, group, 1)); err != nil {
		t.Fatal(err)
	}
	err = g.Preflight(ctx)
	if err == nil || !strings.Contains(err.Error(), "has 2 partitions, fewer than its source") {
		t.Fatalf("too few partitions: got %v", err)
	}

	cfg.CreateTopics = true
	cfg.Group = testkit.UniqueName(t, "g2")
	g2, err := consumers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Preflight(ctx); err != nil {
		t.Fatal(err)
	}
	names := []string{consumers.RetryTopic(e.topic, cfg.Group, 1), consumers.RetryTopic(e.topic, cfg.Group, 2), consumers.DLTTopic(e.topic, cfg.Group)}
	// A real cluster's metadata shows a new topic's partitions a moment
	// after the creation returns.
	testkit.WaitFor(t, 30*time.Second, "the created topics with 4 partitions each", func() bool {
		td, err := adm.ListTopics(ctx, names...)
		if err != nil {
			return false
		}
		for _, n := range names {
			if len(td[n].Partitions) != 4 {
				return false
			}
		}
		return true
	})

	if _, err := consumers.New(consumers.Config{Topics: []string{e.topic}}); err == nil ||
		!strings.Contains(err.Error(), "Group is required") || !strings.Contains(err.Error(), "Handler") {
		t.Errorf("bad config: got %v", err)
	}
}

// Dedupe rows older than the retention are deleted; younger ones stay.
func TestDedupeRetention(t *testing.T) {
	e := newGroupEnv(t, 1)
	group := testkit.UniqueName(t, "g")
	ctx := context.Background()
	old, fresh, other := uuid.New(), uuid.New(), uuid.New()
	if _, err := e.db.Exec(ctx, `INSERT INTO eventline_consumer_dedupe (group_id, event_id, applied_at) VALUES
		($1, $2, now() - interval '8 days'), ($1, $3, now() - interval '6 days'), ('another-group', $4, now() - interval '8 days')`,
		group, old, fresh, other); err != nil {
		t.Fatal(err)
	}
	e.run(t, consumers.Config{Group: group, Handler: recordingHandler(group, nil)})
	testkit.WaitFor(t, 30*time.Second, "the expired row deleted", func() bool {
		return e.count(t, `SELECT count(*) FROM eventline_consumer_dedupe WHERE event_id = $1`, old) == 0
	})
	if n := e.count(t, `SELECT count(*) FROM eventline_consumer_dedupe WHERE event_id = ANY($1)`, []uuid.UUID{fresh, other}); n != 2 {
		t.Errorf("%d of the 2 rows to keep are left (one is young, one belongs to another group)", n)
	}
}

// Members starting together race to create the same retry and DLT topics:
// each topic is reported created by exactly one of them, the others say it
// was created meanwhile (the "already exists" answer is not a creation).
func TestConcurrentPreflightReportsEachCreationOnce(t *testing.T) {
	e := newGroupEnv(t, 2)
	group := testkit.UniqueName(t, "g")
	var logs testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := consumers.Config{Group: group, Topics: []string{e.topic}, Brokers: e.brokers, DB: e.db, Serde: e.serde,
		Handler: recordingHandler(group, nil), RetryDelays: fastDelays, CreateTopics: true, Logger: log}
	const members = 6
	var wg sync.WaitGroup
	for range members {
		g, err := consumers.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := g.Preflight(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	out := logs.String()
	want := len(fastDelays) + 1 // retry topics and the DLT
	if n := strings.Count(out, `msg="consumers: created topic"`); n != want {
		t.Errorf("%d creations reported for %d topics:\n%s", n, want, out)
	}
	t.Logf("%d creations reported by %d members; %d saw a topic created meanwhile", want, members,
		strings.Count(out, "created meanwhile"))
}
