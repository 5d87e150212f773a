package events_test

import (
	"encoding/json"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/schemas"
)

var generated = map[string]schemas.Event{
	"eventline.orders.OrderCreated":          &events.OrderCreated{},
	"eventline.orders.OrderConfirmed":        &events.OrderConfirmed{},
	"eventline.orders.OrderCancelled":        &events.OrderCancelled{},
	"eventline.inventory.InventoryReserved":  &events.InventoryReserved{},
	"eventline.inventory.InventoryConfirmed": &events.InventoryConfirmed{},
	"eventline.inventory.InventoryReleased":  &events.InventoryReleased{},
	"eventline.inventory.StockDepleted":      &events.StockDepleted{},
	"eventline.inventory.StockReplenished":   &events.StockReplenished{},
}

// Every event of the demo domain has a schema file named after it, a Go type
// generated from exactly that schema, and a doc on the record and on every
// field.
func TestCatalog(t *testing.T) {
	all := events.Catalog().All()
	if len(all) != len(generated) {
		t.Fatalf("catalogue has %d schemas, want %d", len(all), len(generated))
	}
	for _, info := range all {
		ev, ok := generated[info.Name]
		if !ok {
			t.Errorf("%s: no generated type", info.Name)
			continue
		}
		if made, ok := events.New(info.Name); !ok || reflect.TypeOf(made) != reflect.TypeOf(ev) {
			t.Errorf("events.New(%s) = %T, %v; add it to types.go", info.Name, made, ok)
		}
		if want := info.Name[strings.LastIndex(info.Name, ".")+1:] + ".avsc"; path.Base(info.File) != want {
			t.Errorf("%s lives in %s, want %s", info.Name, info.File, want)
		}
		if ev.Schema().Fingerprint() != info.Schema.Fingerprint() {
			t.Errorf("%s: generated type's schema differs from %s: run `make generate`", info.Name, info.File)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(info.Text), &doc); err != nil {
			t.Fatal(err)
		}
		checkDocs(t, info.File, "", doc)
		if got, ok := events.Catalog().Lookup(info.Name); !ok || got.File != info.File {
			t.Errorf("Lookup(%s) = %+v, %v", info.Name, got, ok)
		}
	}
	if _, ok := events.Catalog().Lookup("eventline.orders.Nope"); ok {
		t.Error("Lookup found a schema that does not exist")
	}
}

func checkDocs(t *testing.T, file, at string, node any) {
	t.Helper()
	switch n := node.(type) {
	case map[string]any:
		if n["type"] == "record" || n["type"] == "enum" {
			if d, _ := n["doc"].(string); d == "" {
				t.Errorf("%s%s: %v %v has no doc", file, at, n["type"], n["name"])
			}
		}
		if fields, ok := n["fields"].([]any); ok {
			for _, f := range fields {
				fm := f.(map[string]any)
				if d, _ := fm["doc"].(string); d == "" {
					t.Errorf("%s%s/fields/%v: no doc", file, at, fm["name"])
				}
				checkDocs(t, file, at+"/fields/"+fm["name"].(string), fm["type"])
			}
		}
		for _, k := range []string{"items", "values"} {
			if v, ok := n[k]; ok {
				checkDocs(t, file, at+"/"+k, v)
			}
		}
	case []any:
		for _, b := range n {
			checkDocs(t, file, at, b)
		}
	}
}

// Schemas use the logical types the domain needs: uuid ids and
// timestamp-millis times.
func TestLogicalTypes(t *testing.T) {
	info, ok := events.Catalog().Lookup("eventline.orders.OrderCreated")
	if !ok {
		t.Fatal("OrderCreated missing")
	}
	rec := info.Schema.(*avro.RecordSchema)
	want := map[string]string{"order_id": "uuid", "customer_id": "uuid", "created_at": "timestamp-millis"}
	for _, f := range rec.Fields() {
		lt, ok := want[f.Name()]
		if !ok {
			continue
		}
		ls, isLogical := f.Type().(avro.LogicalTypeSchema)
		if !isLogical || ls.Logical() == nil || string(ls.Logical().Type()) != lt {
			t.Errorf("field %s: want logical type %s", f.Name(), lt)
		}
	}
}

// The demo's pipeline file routes every event of the catalogue, and every
// generated type matches its file (what producer.New checks).
func TestPipelineRoutesCatalog(t *testing.T) {
	p := events.Pipeline()
	all := events.All()
	if len(all) != len(generated) {
		t.Fatalf("All() has %d types, want %d", len(all), len(generated))
	}
	for _, ev := range all {
		info, err := events.Catalog().Of(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.TopicFor(info.Name); !ok {
			t.Errorf("%s is routed to no topic in eventline.yaml", info.Name)
		}
	}
	if got, want := len(p.Events()), len(generated); got != want {
		t.Errorf("eventline.yaml routes %d events, want %d", got, want)
	}
}
