package bench

// The member side of `eventline bench deploy` (deploy.go): one member of the
// measured group, in a process of its own, reporting its lifecycle.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/schemas"
)

// DeployMemberSpecEnv names the environment variable holding a member's
// spec (not argv: it holds the database URL).
const DeployMemberSpecEnv = "EVENTLINE_BENCH_DEPLOY_MEMBER"

// DeployMemberSpec is one member process's work.
type DeployMemberSpec struct {
	Env            Env             `json:"env"`
	Schema         string          `json:"schema"`
	Group          string          `json:"group"`
	Topic          string          `json:"topic"`
	Protocol       string          `json:"protocol"`
	InstanceID     string          `json:"instance_id"`
	FailShare      float64         `json:"fail_share"`
	RetryDelays    []time.Duration `json:"retry_delays"`
	SessionTimeout time.Duration   `json:"session_timeout"`
	// HeartbeatInterval of the classic protocol (0: franz-go's 3 s).
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
}

// memberLine is what a member prints, one JSON object per line.
type memberLine struct {
	T     int64   `json:"t"` // unix ms
	Ev    string  `json:"ev"`
	Parts []int32 `json:"parts,omitempty"`
	Dups  int64   `json:"dups,omitempty"`
	Proto string  `json:"proto,omitempty"`
}

// DeployMember runs one member until ctx ends, printing its lifecycle to
// out: "ready" once both consumers joined, "assigned"/"revoked" with the
// source partitions, "stats" every 500 ms and at the end.
func DeployMember(ctx context.Context, spec DeployMemberSpec, out io.Writer, log *slog.Logger) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(l memberLine) {
		mu.Lock()
		defer mu.Unlock()
		l.T = time.Now().UnixMilli()
		_ = enc.Encode(l)
	}
	pool, serde, err := spec.Env.consumerDeps(ctx, 32, "")
	if err != nil {
		return err
	}
	defer pool.Close()
	protocol, err := consumers.ParseProtocol(spec.Protocol)
	if err != nil {
		return err
	}
	insert := `INSERT INTO ` + pgx.Identifier{spec.Schema, "deploy_applied"}.Sanitize() + ` AS a (event_id, partition, attempt, produced_at, applied_at)
		SELECT id, p, at, to_timestamp(ms / 1000.0), clock_timestamp() FROM unnest($1::uuid[], $2::int[], $3::int[], $4::bigint[]) AS u(id, p, at, ms)
		ON CONFLICT (event_id) DO UPDATE SET n = a.n + 1`
	fails := func(ev *consumers.Event) bool { return ev.Attempt == 0 && failsOnce(ev.ID, spec.FailShare) }
	apply := func(ctx context.Context, tx pgx.Tx, evs []*consumers.Event) error {
		ids, parts, attempts, ms := make([]uuid.UUID, len(evs)), make([]int32, len(evs)), make([]int32, len(evs)), make([]int64, len(evs))
		for i, ev := range evs {
			if fails(ev) {
				return errFirstAttempt // isolated by the per-event handler
			}
			ids[i], parts[i], attempts[i], ms[i] = ev.ID, ev.Partition, int32(ev.Attempt), ev.Timestamp.UnixMilli()
			if ev.Attempt > 0 { // a retry copy: the source's partition
				parts[i] = originPartition(ev)
			}
		}
		_, err := tx.Exec(ctx, insert, ids, parts, attempts, ms)
		return err
	}
	g, err := consumers.New(consumers.Config{
		Group: spec.Group, Topics: []string{spec.Topic}, Brokers: spec.Env.Brokers, KafkaOpts: spec.Env.KafkaOpts,
		DB: pool, Schema: spec.Schema, Serde: serde, Events: []schemas.Event{&events.OrderCreated{}},
		BatchHandler: apply,
		Handler: func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
			return apply(ctx, tx, []*consumers.Event{ev})
		},
		RetryDelays: spec.RetryDelays, CreateTopics: true, Protocol: protocol, InstanceID: spec.InstanceID,
		ConsumerOpts: append([]kgo.Opt{kgo.SessionTimeout(spec.SessionTimeout)}, heartbeat(spec.HeartbeatInterval)...),
		Logger:       log,
		// Every assignment is reported, an empty one too: each is a
		// rebalance this member took part in.
		OnAssigned: func(m map[string][]int32) { emit(memberLine{Ev: "assigned", Parts: m[spec.Topic]}) },
		OnRevoked: func(m map[string][]int32) {
			if ps := m[spec.Topic]; len(ps) > 0 {
				emit(memberLine{Ev: "revoked", Parts: ps})
			}
		},
	})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	ready, n := false, 0
	for {
		select {
		case err := <-done:
			st := g.Stats()
			emit(memberLine{Ev: "stats", Dups: st.Duplicates, Proto: string(st.Protocol)})
			return err
		case <-tick.C:
		}
		if !ready && g.Ready() == nil {
			ready = true
			emit(memberLine{Ev: "ready", Proto: string(g.Stats().Protocol)})
		}
		if n++; n%10 == 0 {
			emit(memberLine{Ev: "stats", Dups: g.Stats().Duplicates})
		}
	}
}

func originPartition(ev *consumers.Event) int32 {
	var p int32
	_, _ = fmt.Sscan(ev.Headers[headers.OriginalPartition], &p)
	return p
}

func heartbeat(d time.Duration) []kgo.Opt {
	if d <= 0 {
		return nil
	}
	return []kgo.Opt{kgo.HeartbeatInterval(d)}
}
