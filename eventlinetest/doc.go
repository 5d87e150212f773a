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
//   - RequireApplied and RequireNotApplied assert whether a consumer group
//     applied an event (<schema>.eventline_consumer_dedupe).
//
// The Require helpers take a Querier (a pgx.Tx, *pgx.Conn or *pgxpool.Pool)
// and the PostgreSQL schema that eventline's tables were migrated into (""
// meaning "public"). They call tb.Helper and, on failure, tb.Fatalf with
// what they found instead.
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
package eventlinetest
