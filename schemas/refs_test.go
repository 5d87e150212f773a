package schemas_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
	"github.com/eventline/eventline/schemas/compat"
)

const (
	refMoney    = `{"type": "record", "name": "Money", "namespace": "acme.shared", "fields": [{"name": "units", "type": "long"}, {"name": "currency", "type": "string"}]}`
	refMoneyV2  = `{"type": "record", "name": "Money", "namespace": "acme.shared", "fields": [{"name": "units", "type": "long"}, {"name": "currency", "type": "string"}, {"name": "scale", "type": "int", "default": 2}]}`
	refRefunded = `{"type": "record", "name": "PaymentRefunded", "namespace": "acme.payments", "fields": [{"name": "payment_id", "type": "string"}, {"name": "amount", "type": "acme.shared.Money"}]}`
	refCaptured = `{"type": "record", "name": "PaymentCaptured", "namespace": "acme.payments", "fields": [{"name": "payment_id", "type": "string"}, {"name": "amount", "type": "acme.shared.Money"}, {"name": "fee", "type": ["null", "acme.shared.Money"], "default": null}]}`
)

type money struct {
	Units    int64  `avro:"units"`
	Currency string `avro:"currency"`
}

type moneyV2 struct {
	money
	Scale int32 `avro:"scale"`
}

type refunded struct {
	PaymentID string `avro:"payment_id"`
	Amount    money  `avro:"amount"`
}

var refundedSchema = must(compat.ParseWith(refRefunded, refMoney))

func (*refunded) Schema() avro.Schema { return refundedSchema }

// refundedV2 reads with the shared type's next version.
type refundedV2 struct {
	PaymentID string  `avro:"payment_id"`
	Amount    moneyV2 `avro:"amount"`
}

var refundedV2Schema = must(compat.ParseWith(refRefunded, refMoneyV2))

func (*refundedV2) Schema() avro.Schema { return refundedV2Schema }

type captured struct {
	PaymentID string `avro:"payment_id"`
	Amount    money  `avro:"amount"`
	Fee       *money `avro:"fee"`
}

var capturedSchema = must(compat.ParseWith(refCaptured, refMoney))

func (*captured) Schema() avro.Schema { return capturedSchema }

func must(s avro.Schema, err error) avro.Schema {
	if err != nil {
		panic(err)
	}
	return s
}

// refRegistry registers, in eventline's enforcing registry, Money under its
// own subject, two events referencing it, and Confluent's multi-type topic
// subject: a union whose members are references to the two events.
func refRegistry(t *testing.T) (cl *sr.Client, refundedID, unionID int) {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(testkit.Registry(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	create := func(subject, text string, refs ...sr.SchemaReference) sr.SubjectSchema {
		t.Helper()
		ss, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro, References: refs})
		if err != nil {
			t.Fatalf("registering %s: %v", subject, err)
		}
		return ss
	}
	m := create("acme.shared.Money", refMoney)
	moneyRef := sr.SchemaReference{Name: "acme.shared.Money", Subject: "acme.shared.Money", Version: m.Version}
	r := create("payments-acme.payments.PaymentRefunded", refRefunded, moneyRef)
	c := create("payments-acme.payments.PaymentCaptured", refCaptured, moneyRef)
	u := create("payments-value", `["acme.payments.PaymentRefunded", "acme.payments.PaymentCaptured"]`,
		sr.SchemaReference{Name: "acme.payments.PaymentRefunded", Subject: r.Subject, Version: r.Version},
		sr.SchemaReference{Name: "acme.payments.PaymentCaptured", Subject: c.Subject, Version: c.Version})
	return cl, r.ID, u.ID
}

// unionValue frames v (written as member index idx of the union) under id,
// as Confluent's serializers write a multi-type topic's records.
func unionValue(t *testing.T, id, idx int, member avro.Schema, v any) []byte {
	t.Helper()
	body, err := avro.Marshal(member, v)
	if err != nil {
		t.Fatal(err)
	}
	b := schemas.AppendHeader(nil, id)
	b = binary.AppendVarint(b, int64(idx))
	return append(b, body...)
}

// A writer schema with references is fetched, its references resolved
// through the registry (each subject version once), and decoded into a
// reader, also one whose shared type evolved.
func TestDecodeWriterWithReferences(t *testing.T) {
	cl, id, _ := refRegistry(t)
	src := &countingSource{src: cl}
	serde := schemas.NewSerde(src)
	ctx := context.Background()
	in := &refunded{PaymentID: "p-1", Amount: money{Units: 1250, Currency: "EUR"}}
	b, err := schemas.Encode(id, refundedSchema, in)
	if err != nil {
		t.Fatal(err)
	}
	var out refunded
	if err := serde.Decode(ctx, b, &out); err != nil {
		t.Fatal(err)
	}
	if out != *in {
		t.Fatalf("decoded %+v, want %+v", out, *in)
	}
	var v2 refundedV2
	if err := serde.Decode(ctx, b, &v2); err != nil {
		t.Fatal(err)
	}
	if v2.Amount.Units != 1250 || v2.Amount.Scale != 2 {
		t.Fatalf("read with Money v2: %+v", v2)
	}
	if typ, err := serde.EventType(ctx, b); err != nil || typ != "acme.payments.PaymentRefunded" {
		t.Fatalf("EventType = %q, %v", typ, err)
	}
	if src.n != 1 || src.versions != 1 {
		t.Errorf("%d schema fetches by id and %d by subject version, want 1 each", src.n, src.versions)
	}
}

// Confluent's several-types-in-one-topic pattern: the writer is a union of
// references to event subjects; a record decodes to the member it holds,
// into that member's type, and names it as its event type.
func TestDecodeUnionOfReferences(t *testing.T) {
	cl, _, id := refRegistry(t)
	serde := schemas.NewSerde(cl)
	ctx := context.Background()
	fee := money{Units: 30, Currency: "EUR"}
	cap := &captured{PaymentID: "p-2", Amount: money{Units: 990, Currency: "EUR"}, Fee: &fee}
	ref := &refunded{PaymentID: "p-3", Amount: money{Units: 5, Currency: "USD"}}
	bCap := unionValue(t, id, 1, capturedSchema, cap)
	bRef := unionValue(t, id, 0, refundedSchema, ref)

	for _, tc := range []struct {
		b    []byte
		typ  string
		into schemas.Event
		want any
	}{{bCap, "acme.payments.PaymentCaptured", &captured{}, cap}, {bRef, "acme.payments.PaymentRefunded", &refunded{}, ref}} {
		typ, err := serde.EventType(ctx, tc.b)
		if err != nil || typ != tc.typ {
			t.Fatalf("EventType = %q, %v; want %s", typ, err, tc.typ)
		}
		if err := serde.Decode(ctx, tc.b, tc.into); err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		if a, b := normalize(tc.into), normalize(tc.want); !bytes.Equal(a.([]byte), b.([]byte)) {
			t.Errorf("%s decoded %+v, want %+v", tc.typ, tc.into, tc.want)
		}
		g, w, err := serde.DecodeGeneric(ctx, tc.b)
		if err != nil || schemas.FullName(w) != tc.typ {
			t.Fatalf("DecodeGeneric: %v, writer %v", err, w)
		}
		if m, ok := g.(map[string]any); !ok || m["payment_id"] == nil {
			t.Errorf("DecodeGeneric = %#v, want the member's record", g)
		}
	}
	// The wrong member for the reader, and an index the union does not have.
	if err := serde.Decode(ctx, bRef, &captured{}); !errors.Is(err, schemas.ErrUnresolvable) {
		t.Errorf("a refund read as a capture: %v, want ErrUnresolvable", err)
	}
	bad := append(schemas.AppendHeader(nil, id), 0x04) // index 2 of 2 members
	if _, err := serde.EventType(ctx, bad); !errors.Is(err, schemas.ErrBadBody) {
		t.Errorf("index out of range: %v, want ErrBadBody", err)
	}
	if err := serde.Decode(ctx, bad, &captured{}); !schemas.IsDecodeError(err) {
		t.Errorf("index out of range decoded: %v", err)
	}
}

// References count against the Budget: a writer pulling in more schemas
// than MaxReferences is refused as unsupported, without decoding.
func TestReferencesWithinBudget(t *testing.T) {
	cl, id, unionID := refRegistry(t)
	serde := schemas.NewSerde(cl, schemas.WithBudget(schemas.Budget{MaxReferences: 2}))
	ctx := context.Background()
	b, err := schemas.Encode(id, refundedSchema, &refunded{PaymentID: "p", Amount: money{Units: 1, Currency: "EUR"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := serde.Decode(ctx, b, &refunded{}); err != nil {
		t.Fatalf("one reference within a budget of two: %v", err)
	}
	// The union pulls in both events and Money: three.
	u := unionValue(t, unionID, 0, refundedSchema, &refunded{PaymentID: "p", Amount: money{Units: 1, Currency: "EUR"}})
	if err := serde.Decode(ctx, u, &refunded{}); !errors.Is(err, schemas.ErrUnsupportedSchema) {
		t.Errorf("three references in a budget of two: %v, want ErrUnsupportedSchema", err)
	}
	// A source that cannot fetch subject versions says so.
	only := schemas.NewSerde(idOnly{cl})
	if err := only.Decode(ctx, b, &refunded{}); !errors.Is(err, schemas.ErrUnsupportedSchema) {
		t.Errorf("no SchemaByVersion: %v, want ErrUnsupportedSchema", err)
	}
}

type idOnly struct{ cl *sr.Client }

func (s idOnly) SchemaByID(ctx context.Context, id int) (sr.Schema, error) {
	return s.cl.SchemaByID(ctx, id)
}

// SchemaByVersion makes countingSource a ReferenceSource, counting.
func (c *countingSource) SchemaByVersion(ctx context.Context, subject string, version int) (sr.SubjectSchema, error) {
	c.versions++
	return c.src.(schemas.ReferenceSource).SchemaByVersion(ctx, subject, version)
}
