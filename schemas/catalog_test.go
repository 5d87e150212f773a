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
		"not named":   {"d/a.avsc": {Data: []byte(`"string"`)}},
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

const (
	moneyV1 = `{"type": "record", "name": "Money", "namespace": "acme.shared",
  "fields": [{"name": "units", "type": "long"}, {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD"]}}]}`
	actorV1    = `{"type": "record", "name": "Actor", "namespace": "acme.shared", "fields": [{"name": "id", "type": "string"}, {"name": "budget", "type": "Money"}]}`
	refundedV1 = `{"type": "record", "name": "PaymentRefunded", "namespace": "acme.payments",
  "fields": [{"name": "amount", "type": "acme.shared.Money"}, {"name": "by", "type": "acme.shared.Actor"}, {"name": "currency", "type": "acme.shared.Currency"}]}`
	// The same event with the shared types written inline.
	refundedInline = `{"type": "record", "name": "PaymentRefunded", "namespace": "acme.payments",
  "fields": [{"name": "amount", "type": ` + moneyV1 + `}, {"name": "by", "type": {"type": "record", "name": "Actor", "namespace": "acme.shared", "fields": [{"name": "id", "type": "string"}, {"name": "budget", "type": "Money"}]}}, {"name": "currency", "type": "acme.shared.Currency"}]}`
)

// Files use named types other files define, in the same directory or in a
// second one (eventline.yaml's schemas.shared); each file is parsed after
// the ones it uses, and an event's resolved schema is the one it would
// have with the shared types written inline (so a generated type matches).
func TestLoadCatalogSharedTypes(t *testing.T) {
	for name, tc := range map[string]struct {
		files fstest.MapFS
		dirs  []string
	}{
		"one directory":    {fstest.MapFS{"d/a.avsc": {Data: []byte(refundedV1)}, "d/b.avsc": {Data: []byte(actorV1)}, "d/c.avsc": {Data: []byte(moneyV1)}}, []string{"d"}},
		"shared directory": {fstest.MapFS{"d/PaymentRefunded.avsc": {Data: []byte(refundedV1)}, "shared/Actor.avsc": {Data: []byte(actorV1)}, "shared/Money.avsc": {Data: []byte(moneyV1)}}, []string{"d", "shared"}},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := schemas.LoadCatalog(tc.files, tc.dirs...)
			if err != nil {
				t.Fatal(err)
			}
			ev, ok := c.Lookup("acme.payments.PaymentRefunded")
			if !ok {
				t.Fatalf("catalogue: %v", c.All())
			}
			if got := strings.Join(ev.References, ","); got != "acme.shared.Actor,acme.shared.Money" {
				t.Errorf("References = %s, want the files it uses by their top-level names", got)
			}
			if ev.Text != refundedV1 {
				t.Error("Text is not the file's text")
			}
			if want := avro.MustParse(refundedInline).Fingerprint(); ev.Schema.Fingerprint() != want {
				t.Errorf("resolved schema %s differs from the inline one", ev.Schema)
			}
			var order []string
			for _, d := range c.Dependencies(ev.Name) {
				order = append(order, d.Name)
			}
			if got := strings.Join(order, ","); got != "acme.shared.Money,acme.shared.Actor" {
				t.Errorf("Dependencies = %s, want Money before Actor (Actor uses Money)", got)
			}
			if d := c.Dependencies("acme.shared.Money"); len(d) != 0 {
				t.Errorf("Money depends on %v", d)
			}
		})
	}
}

func TestLoadCatalogBadReferences(t *testing.T) {
	a := `{"type": "record", "name": "A", "fields": [{"name": "b", "type": "B"}]}`
	b := `{"type": "record", "name": "B", "fields": [{"name": "a", "type": ["null", "A"]}]}`
	for name, tc := range map[string]struct {
		files fstest.MapFS
		want  string
	}{
		"missing":   {fstest.MapFS{"d/a.avsc": {Data: []byte(refundedV1)}, "d/m.avsc": {Data: []byte(moneyV1)}}, "uses acme.shared.Actor, which no file"},
		"cycle":     {fstest.MapFS{"d/a.avsc": {Data: []byte(a)}, "d/b.avsc": {Data: []byte(b)}}, "cycle"},
		"ambiguous": {fstest.MapFS{"d/a.avsc": {Data: []byte(refundedV1)}, "d/b.avsc": {Data: []byte(actorV1)}, "d/m.avsc": {Data: []byte(moneyV1)}, "d/x.avsc": {Data: []byte(paymentWithMoney)}}, "both define"},
	} {
		_, err := schemas.LoadCatalog(tc.files, "d")
		if !errors.Is(err, schemas.ErrBadReference) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrBadReference saying %q", name, err, tc.want)
		}
	}
	// Self-contained files may each carry their own copy of a type that no
	// file uses by reference, as before references.
	copies := fstest.MapFS{"d/a.avsc": {Data: []byte(paymentWithMoney)}, "d/b.avsc": {Data: []byte(strings.Replace(paymentWithMoney, "PaymentSettled", "PaymentHeld", 1))}}
	if _, err := schemas.LoadCatalog(copies, "d"); err != nil {
		t.Errorf("self-contained copies: %v", err)
	}
}

const paymentWithMoney = `{"type": "record", "name": "PaymentSettled", "namespace": "acme.payments", "fields": [{"name": "amount", "type": ` + moneyV1 + `}]}`
