package deadletter

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/internal/hook"
)

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Rate is the most records replayed per second (0: no limit).
	Rate float64
	// MaxReplays refuses a record already replayed this often. Default 3.
	MaxReplays int
	// DryRun reports what would be replayed, producing nothing.
	DryRun bool
}

// ReplayReport says what Replay did.
type ReplayReport struct {
	Replayed []Position `json:"replayed"`
	Refused  []Refusal  `json:"refused"`
}

// Refusal is a record Replay did not replay, and why.
type Refusal struct {
	Position Position `json:"position"`
	Reason   string   `json:"reason"`
}

// Replay sends dead letters back to the first retry topic of the group
// that dead-lettered them, and only there: other groups never see them
// again. Each copy keeps key, value and event headers, lands in its
// original partition, is due at once and carries the replay count + 1.
func Replay(ctx context.Context, brokers []string, dls []Record, o ReplayOptions, opts ...kgo.Opt) (ReplayReport, error) {
	if o.MaxReplays == 0 {
		o.MaxReplays = 3
	}
	var rep ReplayReport
	var todo []Record
	for _, d := range dls {
		switch {
		case d.record == nil:
			rep.Refused = append(rep.Refused, Refusal{d.Position, "not read by List or Scan"})
		case d.Group == "" || d.OriginalTopic == "":
			rep.Refused = append(rep.Refused, Refusal{d.Position, "no eventline-group / eventline-original-topic header: not a dead letter of an eventline group"})
		case d.Untrusted != "":
			rep.Refused = append(rep.Refused, Refusal{d.Position, "not written by the group: " + d.Untrusted})
		case d.ReplayCount >= o.MaxReplays:
			rep.Refused = append(rep.Refused, Refusal{d.Position, fmt.Sprintf("%v: %d replays already (limit %d); fix the cause, then raise the limit deliberately",
				ErrReplayedTooOften, d.ReplayCount, o.MaxReplays)})
		default:
			todo = append(todo, d)
		}
	}
	if o.DryRun || len(todo) == 0 {
		if o.DryRun {
			for _, d := range todo {
				rep.Replayed = append(rep.Replayed, d.Position)
			}
		}
		return rep, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		return rep, err
	}
	defer cl.Close()
	targets := map[string]bool{}
	for _, d := range todo {
		targets[retryTopic(d)] = true
	}
	names := make([]string, 0, len(targets))
	for t := range targets {
		names = append(names, t)
	}
	td, err := kadm.NewClient(cl).ListTopics(ctx, names...)
	if err != nil {
		return rep, fmt.Errorf("checking the retry topics: %w", err)
	}
	for _, t := range names {
		if d, ok := td[t]; !ok || d.Err != nil {
			return rep, fmt.Errorf("retry topic %s does not exist: start the group once (it creates or checks its topics) before replaying", t)
		}
	}
	var tick <-chan time.Time
	if o.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer t.Stop()
		tick = t.C
	}
	for i, d := range todo {
		if tick != nil && i > 0 {
			select {
			case <-ctx.Done():
				return rep, ctx.Err()
			case <-tick:
			}
		}
		// Built per record: a rate-limited replay is due when sent.
		r := hook.ReplayCopy(d.record, retryTopic(d), d.Group, d.ErrorClass, d.ErrorMessage, d.ReplayCount+1, time.Now())
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return rep, fmt.Errorf("replaying %s to %s: %w", d.Position, r.Topic, err)
		}
		rep.Replayed = append(rep.Replayed, d.Position)
	}
	return rep, nil
}

// retryTopic is where d is replayed: its group's first retry topic.
func retryTopic(d Record) string { return consumers.RetryTopic(d.OriginalTopic, d.Group, 1) }
