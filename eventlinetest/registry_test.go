package eventlinetest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/eventlinetest"
	"github.com/eventline/eventline/registry"
)

const (
	orderV1 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
	// Adds a field with a default: BACKWARD compatible.
	orderV2 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""}]}`
	// Adds a field without a default: a v3 reader cannot read v2 records.
	orderV3 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"note","type":"string","default":""},{"name":"qty","type":"int"}]}`
)

// Users rely on the registry refusing what production's would: under
// BACKWARD (the default), an incompatible second version is a 409.
func TestStartRegistryEnforcesBackward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := eventlinetest.StartRegistry(t)
	cl := reg.Client()

	v1, err := cl.CreateSchema(ctx, "orders-value", sr.Schema{Schema: orderV1})
	if err != nil || v1.Version != 1 || v1.ID != 1 {
		t.Fatalf("v1: %+v, %v", v1, err)
	}
	v2, err := cl.CreateSchema(ctx, "orders-value", sr.Schema{Schema: orderV2})
	if err != nil || v2.Version != 2 {
		t.Fatalf("compatible v2: %+v, %v", v2, err)
	}
	_, err = cl.CreateSchema(ctx, "orders-value", sr.Schema{Schema: orderV3})
	if !registry.IsIncompatible(err) {
		t.Fatalf("incompatible v3: %v, want HTTP 409", err)
	}
	versions, err := cl.SubjectVersions(ctx, "orders-value")
	if err != nil || len(versions) != 2 {
		t.Fatalf("versions after the refusal: %v, %v", versions, err)
	}

	// Under NONE the same schema goes through: the level is what decides.
	if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "orders-value"); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if _, err := cl.CreateSchema(ctx, "orders-value", sr.Schema{Schema: orderV3}); err != nil {
		t.Fatalf("v3 under NONE: %v", err)
	}

	// URL serves the REST API to any client.
	resp, err := http.Get(reg.URL() + "/subjects")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var subjects []string
	if err := json.NewDecoder(resp.Body).Decode(&subjects); err != nil || len(subjects) != 1 || subjects[0] != "orders-value" {
		t.Fatalf("GET /subjects: %v, %v", subjects, err)
	}
}

// Each test gets its own, empty registry.
func TestStartRegistryIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := eventlinetest.StartRegistry(t), eventlinetest.StartRegistry(t)
	if a.URL() == b.URL() {
		t.Fatalf("two registries on %s", a.URL())
	}
	if _, err := a.Client().CreateSchema(ctx, "s", sr.Schema{Schema: orderV1}); err != nil {
		t.Fatal(err)
	}
	subjects, err := b.Client().Subjects(ctx)
	if err != nil || len(subjects) != 0 {
		t.Fatalf("second registry: %v, %v", subjects, err)
	}
}
