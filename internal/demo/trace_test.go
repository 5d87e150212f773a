package demo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventline/eventline/internal/demo"
	"github.com/eventline/eventline/internal/testkit"
)

// One trace follows an order from the HTTP request through the outbox,
// the relay, the inventory consumer, back through the orders consumer and
// to the inventory's confirmation; a retried event's retry stays in its
// trace, as a child of the failed attempt.
func TestSagaTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	prefix := testkit.UniqueName(t, "tr") + "."
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Config{
		Brokers: testkit.Kafka(t), RegistryURL: testkit.Registry(t), DatabaseURL: testkit.Postgres(t),
		Orders: 40, FaultShare: 0.25, Prefix: prefix, TracerProvider: tp,
		RetryDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond},
		Logger:      testkit.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.InvariantsOK || res.Retried == 0 {
		t.Fatalf("run: invariants %v, retried %d", res.Invariants, res.Retried)
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	// chain walks from s up through its parents, returning the names root first.
	chain := func(s tracetest.SpanStub) []string {
		var names []string
		for {
			names = append([]string{s.Name}, names...)
			p, ok := byID[s.Parent.SpanID()]
			if !s.Parent.IsValid() || !ok {
				return names
			}
			if p.SpanContext.TraceID() != s.SpanContext.TraceID() {
				t.Fatalf("span %s has a parent in another trace", s.Name)
			}
			s = p
		}
	}
	ord, inv := prefix+"orders.events", prefix+"inventory.events"
	// The saga of a confirmed order: the inventory's processing of
	// OrderConfirmed is the last hop.
	want := []string{"POST /orders", "outbox append",
		ord + " publish", ord + " receive", ord + " process", "outbox append", // inventory reserves
		inv + " publish", inv + " receive", inv + " process", "outbox append", // orders confirms
		ord + " publish", ord + " receive", ord + " process"} // inventory confirms
	found := false
	for _, s := range spans {
		if s.Name == ord+" process" {
			if got := chain(s); strings.Join(got, " > ") == strings.Join(want, " > ") {
				found = true
				break
			}
		}
	}
	if !found {
		names := map[string]int{}
		for _, s := range spans {
			names[s.Name]++
		}
		t.Fatalf("no trace with the full saga chain %v; span names: %v", want, names)
	}
	// A retry: the failed process span is the parent of the retry.1 copy's
	// publish, whose processing succeeds.
	retry1 := ord + "." + prefix + "inventory.retry.1"
	wantRetry := []string{ord + " process", retry1 + " publish", retry1 + " receive", retry1 + " process"}
	retried := false
	for _, s := range spans {
		if s.Name != retry1+" process" {
			continue
		}
		got := chain(s)
		if len(got) >= 4 && fmt.Sprint(got[len(got)-4:]) == fmt.Sprint(wantRetry) && got[0] == "POST /orders" {
			retried = true
			if p := byID[byID[byID[s.Parent.SpanID()].Parent.SpanID()].Parent.SpanID()]; p.Status.Code.String() != "Error" {
				t.Errorf("the failed attempt's process span has status %v, want Error", p.Status)
			}
			break
		}
	}
	if !retried {
		t.Errorf("no retried event whose retry.1 processing chains back to its failed attempt and the HTTP request")
	}
}
