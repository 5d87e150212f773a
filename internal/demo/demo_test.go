package demo_test

import (
	"context"
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
	if res.Orders != 400 || res.Confirmed == 0 || res.Cancelled == 0 {
		t.Errorf("orders %d, confirmed %d, cancelled %d: want 400 with both outcomes", res.Orders, res.Confirmed, res.Cancelled)
	}
	if res.DeadLettered != 3 || res.DoubleApplied != 0 || res.Retried == 0 {
		t.Errorf("dlt %d (want 3), double applications %d (want 0), retried %d (want > 0)", res.DeadLettered, res.DoubleApplied, res.Retried)
	}
}
