package schemas_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas"
)

const paymentV1 = `{"type": "record", "name": "PaymentCaptured", "namespace": "acme.payments",
  "doc": "A captured payment.",
  "fields": [{"name": "payment_id", "type": "string", "doc": "id"},
             {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["OK", "UNKNOWN"], "default": "UNKNOWN"}}]}`

type payment struct {
	PaymentID string `avro:"payment_id"`
	Status    string `avro:"status"`
}

var paymentSchema = avro.MustParse(paymentV1)

func (*payment) Schema() avro.Schema { return paymentSchema }

type stalePayment struct{ payment }

var staleSchema = avro.MustParse(`{"type": "record", "name": "PaymentCaptured", "namespace": "acme.payments", "fields": [{"name": "payment_id", "type": "string"}]}`)

func (*stalePayment) Schema() avro.Schema { return staleSchema }

type other struct{}

var otherSchema = avro.MustParse(`{"type": "record", "name": "Other", "fields": []}`)

func (*other) Schema() avro.Schema { return otherSchema }

// A user's catalogue keeps each file's exact text (docs, defaults, layout):
// that is what gets registered.
func TestLoadCatalogKeepsText(t *testing.T) {
	fsys := fstest.MapFS{"schemas/PaymentCaptured.avsc": {Data: []byte(paymentV1)}, "schemas/README.md": {Data: []byte("not a schema")}}
	c, err := schemas.LoadCatalog(fsys, "schemas")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Of(&payment{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Text != paymentV1 || info.File != "schemas/PaymentCaptured.avsc" || info.Name != "acme.payments.PaymentCaptured" {
		t.Errorf("info = %+v", info)
	}
	if _, err := c.Of(&stalePayment{}); !errors.Is(err, schemas.ErrStaleType) {
		t.Errorf("stale type: %v, want ErrStaleType", err)
	}
	if _, err := c.Of(&other{}); !errors.Is(err, schemas.ErrNotInCatalog) {
		t.Errorf("other type: %v, want ErrNotInCatalog", err)
	}
	if len(c.All()) != 1 {
		t.Errorf("All() = %d entries", len(c.All()))
	}
}

func TestLoadCatalogErrors(t *testing.T) {
	for name, files := range map[string]fstest.MapFS{
		"duplicate":   {"d/a.avsc": {Data: []byte(paymentV1)}, "d/b.avsc": {Data: []byte(paymentV1)}},
		"not JSON":    {"d/a.avsc": {Data: []byte(`{"type": "record",`)}},
		"not record":  {"d/a.avsc": {Data: []byte(`{"type": "enum", "name": "E", "symbols": ["A"]}`)}},
		"bad schema":  {"d/a.avsc": {Data: []byte(`{"type": "record", "name": "R", "fields": [{"name": "x", "type": "nope"}]}`)}},
		"missing dir": {},
		// A wrong schemas.dir, or files not embedded: refused here, not
		// later as "not in the catalogue".
		"no .avsc": {"d/readme.md": {Data: []byte("x")}},
	} {
		if _, err := schemas.LoadCatalog(files, "d"); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "missing dir" && !strings.Contains(err.Error(), "d/") {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	if _, err := schemas.LoadCatalog(fstest.MapFS{"d/readme.md": {Data: []byte("x")}}, "d"); !errors.Is(err, schemas.ErrEmptyCatalog) {
		t.Errorf("no .avsc file: %v, want ErrEmptyCatalog", err)
	}
}
