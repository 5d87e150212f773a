package shipping_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/eventlinetest"

	"example.com/shipping"
)

// The tracking projection's handlers, tested as a team tests them: typed
// events applied in the test's transaction by eventlinetest's Applier,
// with the group's own Config, no Kafka and no running group.
func TestTrackingHandlers(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t, ctx)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// README:begin applier
	ap := eventlinetest.NewApplier(t, consumers.Config{Group: group, Topics: []string{topic}, Schema: shipping.Schema, Mux: shipping.Tracking()})

	id := uuid.NewString()
	dispatched, err := ap.Apply(ctx, t, tx, &shipping.ShipmentDispatched{ShipmentID: id, OrderRef: "order-7", Parcels: 2,
		Carrier: shipping.CarrierUps, DispatchedAt: time.Now().UTC().Truncate(time.Millisecond)}, eventlinetest.WithAggregate("shipment", id, 1))
	if err != nil || dispatched.Outcome != eventlinetest.Applied {
		t.Fatalf("ShipmentDispatched: %+v, %v", dispatched, err)
	}
	requireTracking(t, tx, id, "in_transit", "", 1)
	eventlinetest.RequireApplied(ctx, t, tx, shipping.Schema, group, dispatched.EventID)
	// README:end applier

	// The carrier's deliveries come from its own producer, without
	// eventline headers: the dedupe key is derived from the record.
	signed := "reception"
	delivered, err := ap.Apply(ctx, t, tx, &shipping.ShipmentDelivered{ShipmentID: id, DeliveredAt: time.Now().UTC().Truncate(time.Millisecond), SignedBy: &signed},
		eventlinetest.AsForeign())
	if err != nil || delivered.Outcome != eventlinetest.Applied {
		t.Fatalf("ShipmentDelivered: %+v, %v", delivered, err)
	}
	requireTracking(t, tx, id, "delivered", signed, 2)

	// Redeliveries are absorbed by the dedupe rows: the handlers do not run.
	for _, rec := range []*eventlinetest.ApplyResult{dispatched, delivered} {
		again, err := ap.Redeliver(ctx, t, tx, rec.Record)
		if err != nil || again.Outcome != eventlinetest.Duplicate {
			t.Fatalf("redelivered %s: %+v, %v", rec.EventType, again, err)
		}
	}
	requireTracking(t, tx, id, "delivered", signed, 2)

	// A delivery without a shipment id is refused for good (to the DLT at
	// runtime), and leaves the transaction as it was.
	bad, err := ap.Apply(ctx, t, tx, &shipping.ShipmentDelivered{DeliveredAt: time.Now()}, eventlinetest.AsForeign())
	if !consumers.IsPermanent(err) || bad.Outcome != eventlinetest.Failed {
		t.Fatalf("delivery without a shipment id: %+v, %v; want a permanent failure", bad, err)
	}
	eventlinetest.RequireNotApplied(ctx, t, tx, shipping.Schema, group, bad.EventID)
	requireTracking(t, tx, id, "delivered", signed, 2)
}

// requireTracking checks shipment id's tracking row, read through tx.
func requireTracking(t *testing.T, tx pgx.Tx, id, status, signedBy string, applications int) {
	t.Helper()
	var gotStatus string
	var gotSigned *string
	var gotApps int
	if err := tx.QueryRow(context.Background(), `SELECT status, signed_by, applications FROM shipping.tracking WHERE shipment_id = $1`, id).
		Scan(&gotStatus, &gotSigned, &gotApps); err != nil {
		t.Fatal(err)
	}
	if gotStatus != status || (gotSigned == nil) != (signedBy == "") || (gotSigned != nil && *gotSigned != signedBy) || gotApps != applications {
		t.Fatalf("tracking of %s: %s signed by %v, %d applications; want %s signed by %q, %d", id, gotStatus, gotSigned, gotApps, status, signedBy, applications)
	}
}
