package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/headers"
	"github.com/eventline/eventline/internal/hook"
)

// What the module's own tools need of the runtime without it being public
// API: package deadletter's replay copy, the benchmark's view of applied
// batches, the apply path for test helpers.
func init() {
	hook.ReplayCopy = func(rec *kgo.Record, topic, group, class, message string, replays int, due time.Time) *kgo.Record {
		o, _ := originOf(rec, group)
		cp := forwardCopy(rec, o, topic, group, 1, due, class, errors.New(message), due)
		setHeader(cp, headers.ReplayCount, strconv.Itoa(replays))
		return cp
	}
	hook.AfterApply = func(g any, f func([]hook.Result)) { g.(*Group).afterApply = f }
	hook.ApplyRecord = applyRecord
}

// applyRecord is hook.ApplyRecord: one record, in the caller's transaction
// (a pgx.Tx begins savepoints, so the path commits and rolls back exactly
// as it does its own transactions).
func applyRecord(ctx context.Context, tx pgx.Tx, cfg any, rec *kgo.Record) (hook.ApplyResult, error) {
	c, ok := cfg.(Config)
	if !ok {
		return hook.ApplyResult{}, fmt.Errorf("consumers: apply hook: config is %T, want consumers.Config", cfg)
	}
	c = c.withDefaults()
	if err := errors.Join(c.validateApply()...); err != nil {
		return hook.ApplyResult{}, err
	}
	results, err := applierFor(c).apply(ctx, tx, itemsOf([]*kgo.Record{rec}, c.Group), step{}, nil)
	if err != nil {
		return hook.ApplyResult{}, err
	}
	r := results[0]
	return hook.ApplyResult{Outcome: r.Outcome, EventID: r.evID, EventType: r.evType, Failure: r.Err}, nil
}

// hookResults is results as the hooks report them.
func hookResults(results []result) []hook.Result {
	rs := make([]hook.Result, len(results))
	for i, r := range results {
		rs[i] = hook.Result{Record: r.Record, Outcome: r.Outcome, Err: r.Err}
	}
	return rs
}
