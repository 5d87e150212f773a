// Package eventlinetest helps the tests of a module that uses eventline,
// as rivertest does for River:
//
//   - StartRegistry starts an enforcing Confluent-compatible schema registry
//     (package registry, in memory) for one test. Unlike franz-go's srfake it
//     refuses a schema that breaks the subject's compatibility level, so a
//     test sees the 409 that production's registry would answer.
//   - RequireAppended and RequireNotAppended assert what a transaction put
//     in the outbox (<schema>.eventline_outbox), read through that
//     transaction before it commits, or through a pool after.
//   - CaptureMessages and its Capture's RequireAppended and
//     RequireNotAppended do the same for a producer in logical mode
//     (producer.ModeLogical), which writes no row: each event is a logical
//     decoding message in the WAL, which the Capture reads from a temporary
//     replication slot of its own once the transaction commits.
//   - RequireApplied and RequireNotApplied assert whether a consumer group
//     applied an event (<schema>.eventline_consumer_dedupe).
//   - NewApplier and its Apply run a consumer group's handlers (its Mux, or
//     Handler) on a typed event inside the test's transaction, through the
//     consumer runtime's own apply path, as rivertest's Worker does for
//     River: no Kafka, registry or running group. The handler gets the
//     payload and Event it would get at runtime, its effects and the
//     event's dedupe row are visible through the transaction, a second
//     delivery of the event id is a Duplicate, and a failing handler's
//     error is returned with the transaction as it was before.
//
// The package's Require helpers take a Querier (a pgx.Tx, *pgx.Conn or
// *pgxpool.Pool) and the PostgreSQL schema that eventline's tables were
// migrated into ("" meaning "public"). They, and a Capture's, call
// tb.Helper and, on failure, tb.Fatalf with what they found instead.
//
// A test of an application whose PlaceOrder appends an OrderPlaced event in
// the caller's transaction:
//
//	func TestPlaceOrder(t *testing.T) {
//		ctx := context.Background()
//		reg := eventlinetest.StartRegistry(t)
//		app := newApp(t, reg.Client()) // its producer registers schemas in reg
//
//		tx, err := app.pool.Begin(ctx)
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer tx.Rollback(ctx)
//		if err := app.PlaceOrder(ctx, tx, "order-42"); err != nil {
//			t.Fatal(err)
//		}
//		events := eventlinetest.RequireAppended(ctx, t, tx, "public", eventlinetest.Match{
//			EventType:   "shop.OrderPlaced",
//			AggregateID: "order-42",
//		})
//		if len(events) != 1 {
//			t.Fatalf("appended %d OrderPlaced events, want 1", len(events))
//		}
//		// events[0].Value is the Avro record in Confluent's wire format:
//		// decode it with an sr.Serde to check the payload.
//	}
//
// and of its consumer, after the group processed the event:
//
//	eventlinetest.RequireApplied(ctx, t, pool, "public", "inventory", eventID)
//
// A test of a consumer group's handlers, with the Config the service
// builds for its group (a Mux of typed handlers):
//
//	func TestTrackingMarksDelivered(t *testing.T) {
//		ctx := context.Background()
//		tx := beginTx(t) // in a database migrated into "shipping"
//		ap := eventlinetest.NewApplier(t, consumers.Config{Group: "tracking", Schema: "shipping", Mux: shipping.Tracking()})
//
//		res, err := ap.Apply(ctx, t, tx, &shipping.ShipmentDelivered{ShipmentID: "s-1", DeliveredAt: now})
//		if err != nil || res.Outcome != eventlinetest.Applied {
//			t.Fatalf("got %+v, %v", res, err)
//		}
//		// ... read shipping.tracking through tx ...
//		again, _ := ap.Apply(ctx, t, tx, &shipping.ShipmentDelivered{ShipmentID: "s-1"}, eventlinetest.WithEventID(res.EventID))
//		if again.Outcome != eventlinetest.Duplicate {
//			t.Fatalf("redelivery: %+v", again)
//		}
//	}
//
// When the application's producer runs in logical mode, capture before
// the code under test appends and assert after the commit: PostgreSQL
// decodes a transaction's messages only once it commits, so nothing is
// found before, and a rolled-back transaction's events never are. The
// database must be set up for logical mode (migrate.SetupLogical, as the
// producer needs anyway) and the role must have the REPLICATION attribute.
//
//	func TestPlaceOrderMessageMode(t *testing.T) {
//		ctx := context.Background()
//		reg := eventlinetest.StartRegistry(t)
//		app := newApp(t, reg.Client()) // its producer.Config has Mode: producer.ModeLogical
//		capture := eventlinetest.CaptureMessages(ctx, t, app.pool, "public")
//
//		tx, err := app.pool.Begin(ctx)
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer tx.Rollback(ctx)
//		if err := app.PlaceOrder(ctx, tx, "order-42"); err != nil {
//			t.Fatal(err)
//		}
//		if err := tx.Commit(ctx); err != nil {
//			t.Fatal(err)
//		}
//		events := capture.RequireAppended(ctx, t, eventlinetest.Match{
//			EventType:   "shop.OrderPlaced",
//			AggregateID: "order-42",
//		})
//		if len(events) != 1 {
//			t.Fatalf("appended %d OrderPlaced events, want 1", len(events))
//		}
//		capture.RequireNotAppended(ctx, t, eventlinetest.Match{EventType: "shop.OrderCancelled"})
//	}
package eventlinetest
