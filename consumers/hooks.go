package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/hook"
)

// What the module's own tools need of the runtime without it being public
// API: package deadletter's replay copy, the benchmark's view of applied
// batches, the apply path for test helpers.
func init() {
	hook.ReplayCopy = func(rec *kgo.Record, topic, group, class, message string, replays int, due time.Time) *kgo.Record {
		o, _ := originOf(rec, group)
		cp := forwardCopy(rec, o, topic, group, 1, due, class, errors.New(message), due)
		setHeader(cp, HeaderReplayCount, strconv.Itoa(replays))
		return cp
	}
	hook.AfterApply = func(g any, f func([]hook.Result)) { g.(*Group).afterApply = f }
	hook.Apply = func(ctx context.Context, db interface {
		Begin(context.Context) (pgx.Tx, error)
	}, o hook.ApplyOptions, records []*kgo.Record) ([]hook.Result, error) {
		h, _ := o.Handler.(HandlerFunc)
		if f, ok := o.Handler.(func(context.Context, pgx.Tx, *Event) error); ok {
			h = f
		}
		if h == nil {
			return nil, fmt.Errorf("consumers: hook.Apply: handler %T is not a HandlerFunc", o.Handler)
		}
		ts, err := newTypeSet(o.Events)
		if err != nil {
			return nil, err
		}
		a := newApplier(o.Group, o.Schema, o.Serde, h).WithKeyOrder(o.KeyOrder)
		a.types = ts
		results, err := a.ApplyBatch(ctx, db, records)
		return hookResults(results), err
	}
}

// hookResults is results as the hooks report them.
func hookResults(results []result) []hook.Result {
	rs := make([]hook.Result, len(results))
	for i, r := range results {
		rs[i] = hook.Result{Record: r.Record, Outcome: r.Outcome, Err: r.Err}
	}
	return rs
}
