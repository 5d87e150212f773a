package demo_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/demo"
	"github.com/eventline/eventline/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// The saga settles every order, keeps every invariant, sends the poison
// records to the DLT and some events through the retry chain.
func TestSaga(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Config{
		Brokers: testkit.Kafka(t), RegistryURL: testkit.Registry(t), DatabaseURL: testkit.Postgres(t),
		Orders: 400, Poison: 3, FaultShare: 0.05, Prefix: testkit.UniqueName(t, "demo") + ".",
		RetryDelays: []time.Duration{200 * time.Millisecond, 500 * time.Millisecond, time.Second},
		Logger:      testkit.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if !res.InvariantsOK {
		t.Errorf("invariants: %v (details %v)", res.Invariants, res.Details)
	}
	if res.Orders != 400 || res.Confirmed == 0 || res.Cancelled == 0 || res.Declined == 0 || res.Details["reservations_released"] != int64(res.Declined) {
		t.Errorf("orders %d, confirmed %d, cancelled %d (declined %d, released %d): want 400 with every outcome, one release per declined payment",
			res.Orders, res.Confirmed, res.Cancelled, res.Declined, res.Details["reservations_released"])
	}
	for _, hop := range []string{"order_to_reservation", "reservation_to_terminal"} {
		if h, ok := res.Hops[hop]; !ok || h[0] <= 0 || h[1] < h[0] || h[0] > res.P50ms {
			t.Errorf("hop %s: %v (order → terminal p50 %.1f ms)", hop, h, res.P50ms)
		}
	}
	if res.DeadLettered != 3 || res.DoubleApplied != 0 || res.Retried == 0 {
		t.Errorf("dlt %d (want 3), double applications %d (want 0), retried %d (want > 0)", res.DeadLettered, res.DoubleApplied, res.Retried)
	}
}

// An unreachable database is a clear error naming the redacted URL, never
// the password.
func TestSagaDatabaseDown(t *testing.T) {
	_, err := demo.Run(context.Background(), demo.Config{
		Brokers: testkit.Kafka(t), RegistryURL: testkit.Registry(t),
		DatabaseURL: "postgres://eventline:s3cret@127.0.0.1:1/postgres?connect_timeout=2",
	})
	if err == nil || !strings.Contains(err.Error(), "error connecting to postgres at postgres://eventline:xxxxx@127.0.0.1:1") {
		t.Fatalf("want an error naming the redacted database, got %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
	if _, err := demo.Run(context.Background(), demo.Config{Orders: -1}); err == nil {
		t.Errorf("negative orders accepted")
	}
}
