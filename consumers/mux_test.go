package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/consumers"
)

var refundSchema = avro.MustParse(`{"type": "record", "name": "RefundIssued", "namespace": "acme.payments",
  "fields": [{"name": "refund_id", "type": "string"}]}`)

// refund stands for a type avrogen generated in the user's module.
type refund struct {
	RefundID string `avro:"refund_id"`
}

func (*refund) Schema() avro.Schema { return refundSchema }

// A Mux dispatches by event type to typed handlers and lists the types
// for Config.Events.
func ExampleHandle() {
	mux := consumers.NewMux()
	consumers.Handle(mux, func(ctx context.Context, tx pgx.Tx, ev *consumers.Event, r *refund) error {
		fmt.Println("refund", r.RefundID, "from", ev.Type)
		return nil // e.g. tx.Exec(ctx, `UPDATE ledger ...`, r.RefundID)
	})
	h := mux.Handler()
	_ = h(context.Background(), nil, &consumers.Event{Type: "acme.payments.RefundIssued", Payload: &refund{RefundID: "r-1"}})
	_ = h(context.Background(), nil, &consumers.Event{Type: "acme.payments.Chargeback", Payload: map[string]any{}}) // no handler: acknowledged
	fmt.Println(len(mux.Events()), "typed event type")
	// Output:
	// refund r-1 from acme.payments.RefundIssued
	// 1 typed event type
}

func TestMuxPolicies(t *testing.T) {
	t.Parallel()
	mux := consumers.NewMux()
	consumers.Handle(mux, func(context.Context, pgx.Tx, *consumers.Event, *refund) error { return nil })
	h := mux.Handler()
	// A payload of another Go type (the type was not in Config.Events, so
	// it arrived generic) cannot be handled: permanent, to the DLT.
	err := h(context.Background(), nil, &consumers.Event{Type: "acme.payments.RefundIssued", Payload: map[string]any{}})
	if !consumers.IsPermanent(err) {
		t.Errorf("generic payload for a typed handler: %v, want a permanent error", err)
	}
	errUnknown := errors.New("no handler")
	mux.Unhandled(func(context.Context, pgx.Tx, *consumers.Event) error { return consumers.Permanent(errUnknown) })
	if err := h(context.Background(), nil, &consumers.Event{Type: "acme.Other"}); !errors.Is(err, errUnknown) {
		t.Errorf("Unhandled policy: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("a second handler for the same type did not panic")
		}
	}()
	consumers.Handle(mux, func(context.Context, pgx.Tx, *consumers.Event, *refund) error { return nil })
}
