package consumers

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/applyhook"
)

// The runtime's apply path, for eventlinetest's handler runner: one record,
// in the caller's transaction (a pgx.Tx begins savepoints, so the path
// commits and rolls back exactly as it does its own transactions).
func init() { applyhook.Apply = applyInTx }

func applyInTx(ctx context.Context, tx pgx.Tx, cfg any, rec *kgo.Record) (applyhook.Result, error) {
	c, ok := cfg.(Config)
	if !ok {
		return applyhook.Result{}, fmt.Errorf("consumers: apply hook: config is %T, want consumers.Config", cfg)
	}
	c = c.withDefaults()
	if err := errors.Join(c.validateApply()...); err != nil {
		return applyhook.Result{}, err
	}
	results, err := applierFor(c).apply(ctx, tx, itemsOf([]*kgo.Record{rec}, c.Group), step{}, nil)
	if err != nil {
		return applyhook.Result{}, err
	}
	r := results[0]
	return applyhook.Result{Outcome: r.Outcome.String(), EventID: r.evID, EventType: r.evType, Failure: r.Err}, nil
}
