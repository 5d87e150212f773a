package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/registry"
)

// A registry in memory on a loopback server refuses a second version that
// breaks BACKWARD compatibility (the default level).
func Example() {
	ctx := context.Background()
	reg, err := registry.New(ctx, registry.Config{Store: &registry.MemoryStore{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer reg.Close()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		panic(err)
	}

	v1 := `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
	// A new field without a default: a reader on v2 cannot read v1 records.
	v2 := `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}`
	s, err := cl.CreateSchema(ctx, "orders-value", sr.Schema{Schema: v1})
	fmt.Println(s.Version, s.ID, err)
	_, err = cl.CreateSchema(ctx, "orders-value", sr.Schema{Schema: v2})
	fmt.Println(registry.IsIncompatible(err))
	// Output:
	// 1 1 <nil>
	// true
}
