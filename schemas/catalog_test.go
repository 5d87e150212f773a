package schemas_test

import (
	"encoding/json"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas"
)

var generated = map[string]schemas.Event{
	"eventline.orders.OrderCreated":          &schemas.OrderCreated{},
	"eventline.orders.OrderConfirmed":        &schemas.OrderConfirmed{},
	"eventline.orders.OrderCancelled":        &schemas.OrderCancelled{},
	"eventline.inventory.InventoryReserved":  &schemas.InventoryReserved{},
	"eventline.inventory.InventoryConfirmed": &schemas.InventoryConfirmed{},
	"eventline.inventory.InventoryReleased":  &schemas.InventoryReleased{},
	"eventline.inventory.StockDepleted":      &schemas.StockDepleted{},
	"eventline.inventory.StockReplenished":   &schemas.StockReplenished{},
}

// Every event of the demo domain has a schema file named after it, a Go type
// generated from exactly that schema, and a doc on the record and on every
// field.
func TestCatalog(t *testing.T) {
	all, err := schemas.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(generated) {
		t.Fatalf("catalogue has %d schemas, want %d", len(all), len(generated))
	}
	for _, info := range all {
		ev, ok := generated[info.Name]
		if !ok {
			t.Errorf("%s: no generated type", info.Name)
			continue
		}
		if made, ok := schemas.New(info.Name); !ok || reflect.TypeOf(made) != reflect.TypeOf(ev) {
			t.Errorf("schemas.New(%s) = %T, %v; add it to types.go", info.Name, made, ok)
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
		if got, ok := schemas.Lookup(info.Name); !ok || got.File != info.File {
			t.Errorf("Lookup(%s) = %+v, %v", info.Name, got, ok)
		}
	}
	if _, ok := schemas.Lookup("eventline.orders.Nope"); ok {
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
	info, ok := schemas.Lookup("eventline.orders.OrderCreated")
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
