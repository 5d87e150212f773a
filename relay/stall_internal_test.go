package relay

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/pipeline"
)

// A pipeline topic deleted under the relay stalls it (the client retries
// for ever, so nothing is lost or reordered), but never silently: the
// wait is logged while it lasts.
func TestStalledBatchIsLogged(t *testing.T) {
	t.Parallel()
	log, logs := testkit.CapturingLogger(t)
	r, f, brokers, topic := runInternal(t, log, 100*time.Millisecond, func(r *Relay) { r.slowAck = 200 * time.Millisecond })
	adm := kadm.NewClient(testkit.Client(t, brokers))
	if _, err := adm.DeleteTopics(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.Exec(context.Background(), `INSERT INTO eventline_outbox (topic, record_key, record_value, event_id, event_type, aggregate_type, aggregate_id)
		VALUES ($1, 'k', '\x000000000100', gen_random_uuid(), 'T', 'a', 'k')`, topic); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the stall logged", func() bool {
		return strings.Contains(logs.String(), "records still unacknowledged") && strings.Contains(logs.String(), topic)
	})
	if s := r.Stats(); s.Published != 0 || s.Parked != 0 {
		t.Fatalf("stats %+v: the event must wait for its topic, neither published nor parked", s)
	}
}

// runInternal runs a relay of one single-partition topic for event type T
// on a fresh database, until the test ends, and waits for its leadership.
// set, when not nil, changes the relay's fields before it runs.
func runInternal(t *testing.T, log *slog.Logger, pollInterval time.Duration, set func(*Relay)) (*Relay, *testkit.Fixture, []string, string) {
	f := testkit.Setup(t)
	brokers := testkit.Kafka(t)
	topic := testkit.UniqueName(t, "t")
	r, err := New(Config{DatabaseURL: f.DatabaseURL, Brokers: brokers, Logger: log.With(slog.String("test", t.Name())),
		Pipeline:        &pipeline.Pipeline{Topics: []pipeline.Topic{{Name: topic, Partitions: 1, ReplicationFactor: 1, Events: []string{"T"}}}},
		ShutdownTimeout: time.Second, PollInterval: pollInterval})
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	testkit.WaitFor(t, 30*time.Second, "leadership", func() bool { return r.Stats().Leader })
	return r, f, brokers, topic
}
