package consumers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

// The retry chain has one source: a Pipeline's retry_delays, or
// RetryDelays. Both set and different is refused, so the topics a group
// uses cannot drift from the eventline.yaml the team reviews; both set and
// equal, or either alone, is accepted.
func TestConfigRefusesRetryDelaysThatDifferFromPipeline(t *testing.T) {
	t.Parallel()
	p := &pipeline.Pipeline{}
	p.Consumers.RetryDelays = []time.Duration{time.Second, time.Minute}
	handler := func(context.Context, pgx.Tx, *consumers.Event) error { return nil }
	base := consumers.Config{Group: "g", Topics: []string{"t"}, Brokers: []string{"localhost:9092"}, DB: &pgxpool.Pool{}, Serde: schemas.NewSerde(nil), Handler: handler}

	cfg := base
	cfg.Pipeline, cfg.RetryDelays = p, []time.Duration{time.Second}
	_, err := consumers.New(cfg)
	if err == nil || !strings.Contains(err.Error(), "differ from Pipeline's consumers.retry_delays") {
		t.Fatalf("New(RetryDelays != Pipeline's) = %v, want the difference named", err)
	}
	for name, ok := range map[string]consumers.Config{
		"pipeline alone": {Pipeline: p},
		"delays alone":   {RetryDelays: []time.Duration{time.Second}},
		"both, equal":    {Pipeline: p, RetryDelays: []time.Duration{time.Second, time.Minute}},
	} {
		cfg := base
		cfg.Pipeline, cfg.RetryDelays = ok.Pipeline, ok.RetryDelays
		if _, err := consumers.New(cfg); err != nil {
			t.Errorf("%s: New refused: %v", name, err)
		}
	}
}

// A static member with KIP-848 is refused (see Config.InstanceID), and so
// is a protocol the group does not know.
func TestConfigRefusesStaticMembersOnKIP848(t *testing.T) {
	t.Parallel()
	handler := func(context.Context, pgx.Tx, *consumers.Event) error { return nil }
	base := consumers.Config{Group: "g", Topics: []string{"t"}, Brokers: []string{"localhost:9092"}, DB: &pgxpool.Pool{}, Serde: schemas.NewSerde(nil), Handler: handler}
	for _, tc := range []struct {
		proto consumers.Protocol
		id    string
		want  string
	}{
		{consumers.ProtocolConsumer, "pod-0", "needs the classic group protocol"},
		{"eager", "", `group protocol "eager"`},
	} {
		cfg := base
		cfg.Protocol, cfg.InstanceID = tc.proto, tc.id
		if _, err := consumers.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(Protocol %q, InstanceID %q) = %v, want %q", tc.proto, tc.id, err, tc.want)
		}
	}
	for _, p := range []consumers.Protocol{"", consumers.ProtocolClassic, consumers.ProtocolAuto} {
		cfg := base
		cfg.Protocol, cfg.InstanceID = p, "pod-0"
		if _, err := consumers.New(cfg); err != nil {
			t.Errorf("New(Protocol %q, static) refused: %v", p, err)
		}
	}
}
