package schemas_test

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

type fixture struct {
	reg   *srfake.Registry
	cl    *sr.Client
	serde *schemas.Serde
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{reg: reg, cl: cl, serde: schemas.NewSerde(cl)}
}

func (f *fixture) register(t testing.TB, subject, text string) int {
	t.Helper()
	ss, err := f.cl.CreateSchema(context.Background(), subject, sr.Schema{Schema: text})
	if err != nil {
		t.Fatal(err)
	}
	return ss.ID
}

func sampleTicket() *testevents.TicketOpened {
	return &testevents.TicketOpened{
		TicketID:    "6f1c3a52-8a8e-4a57-9d8e-0c7b2f1a9e01",
		RequesterID: "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e",
		Attachments: []testevents.Attachment{
			{BlobID: "a4d3c2b1-0f9e-4d8c-b7a6-958473625140", Pages: 2, SizeBytes: 1999},
			{BlobID: "b5e4d3c2-1a0f-4e9d-8c7b-a69584736251", Pages: 1, SizeBytes: 500},
		},
		EstimateMinutes: 4498,
		Channel:         "MAIL",
		OpenedAt:        time.UnixMilli(1_790_000_000_123).UTC(),
	}
}

func TestEncodeDecodeEveryEvent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	all := testevents.Catalog().All()
	for _, info := range all {
		if _, isEvent := testevents.New(info.Name); !isEvent {
			continue // the shared Attachment: no event of its own
		}
		id := testkit.RegisterEvent(t, f.cl, "tickets-"+info.Name, testevents.Catalog(), info.Name)
		// A zero value of every generated type round-trips (enums need a
		// valid symbol, so set them).
		in := mustNew(t, info.Name)
		switch v := in.(type) {
		case *testevents.TicketClosed:
			v.Resolution = testevents.ResolutionFixed
		case *testevents.DeadlineMissed:
			v.Deadline = testevents.DeadlineFirstResponse
		}
		b, err := schemas.Encode(id, in.Schema(), in)
		if err != nil {
			t.Fatalf("%s: encode: %v", info.Name, err)
		}
		if b[0] != 0 || int(b[1])<<24|int(b[2])<<16|int(b[3])<<8|int(b[4]) != id {
			t.Fatalf("%s: header % x does not carry id %d", info.Name, b[:5], id)
		}
		out := reflect.New(reflect.TypeOf(in).Elem()).Interface().(schemas.Event)
		if err := f.serde.Decode(ctx, b, out); err != nil {
			t.Fatalf("%s: decode: %v", info.Name, err)
		}
		if !reflect.DeepEqual(normalize(in), normalize(out)) {
			t.Errorf("%s: round trip changed the value:\n in %+v\nout %+v", info.Name, in, out)
		}
	}

	// And a populated TicketOpened, compared field by field.
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	id := testkit.RegisterEvent(t, f.cl, "tickets-"+info.Name, testevents.Catalog(), info.Name)
	in := sampleTicket()
	b, err := schemas.Encode(id, in.Schema(), in)
	if err != nil {
		t.Fatal(err)
	}
	var out testevents.TicketOpened
	if err := f.serde.Decode(ctx, b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", *in, out)
	}
}

// normalize maps nil and empty slices to the same thing and times to UTC.
func normalize(v any) any {
	b, _ := avro.Marshal(v.(schemas.Event).Schema(), v)
	return b
}

// Schema evolution both ways: data written with a newer schema (an added
// field with a default, a new enum symbol) is read into the current type, and
// data written with the current schema is read by a newer reader.
func TestDecodeEvolution(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	v2 := `{"type":"record","name":"TicketClosed","namespace":"helpdesk.tickets","fields":[
	  {"name":"ticket_id","type":{"type":"string","logicalType":"uuid"}},
	  {"name":"requester_id","type":{"type":"string","logicalType":"uuid"}},
	  {"name":"resolution","type":{"type":"enum","name":"Resolution","symbols":["UNKNOWN","FIXED","DUPLICATE","WONT_FIX","EXPIRED","SPAM"],"default":"UNKNOWN"}},
	  {"name":"reopen_count","type":"int"},
	  {"name":"closed_at","type":{"type":"long","logicalType":"timestamp-millis"}},
	  {"name":"closed_by","type":"string","default":"requester"}]}`
	v2Schema := avro.MustParse(v2)
	id2 := f.register(t, "tickets-v2", v2)

	// Newer writer, current reader: the unknown symbol becomes the enum's
	// default, the extra field is skipped.
	newer := map[string]any{
		"ticket_id": "6f1c3a52-8a8e-4a57-9d8e-0c7b2f1a9e01", "requester_id": "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e",
		"resolution": "SPAM", "reopen_count": 2, "closed_at": time.UnixMilli(1_790_000_000_000).UTC(), "closed_by": "agent",
	}
	b, err := schemas.Encode(id2, v2Schema, newer)
	if err != nil {
		t.Fatal(err)
	}
	var cur testevents.TicketClosed
	if err := f.serde.Decode(ctx, b, &cur); err != nil {
		t.Fatalf("current reader of a newer writer: %v", err)
	}
	if cur.Resolution != testevents.ResolutionUnknown || cur.TicketID != newer["ticket_id"] {
		t.Errorf("decoded %+v; want resolution UNKNOWN and the ticket id", cur)
	}

	// Current writer, newer reader: the added field takes its default.
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketClosed")
	id1 := testkit.RegisterEvent(t, f.cl, "tickets-v1", testevents.Catalog(), info.Name)
	b, err = schemas.Encode(id1, info.Schema, &testevents.TicketClosed{
		TicketID: "6f1c3a52-8a8e-4a57-9d8e-0c7b2f1a9e01", RequesterID: "0b9d2c1e-3f4a-4b5c-8d6e-7f8a9b0c1d2e",
		Resolution: testevents.ResolutionExpired, ClosedAt: time.UnixMilli(1_790_000_000_000).UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := f.serde.DecodeAs(ctx, b, v2Schema, &got); err != nil {
		t.Fatalf("newer reader of the current writer: %v", err)
	}
	if got["closed_by"] != "requester" || got["resolution"] != "EXPIRED" {
		t.Errorf("decoded %v; want closed_by=requester (default), resolution=EXPIRED", got)
	}

	// The generic form needs no reader.
	gv, w, err := f.serde.DecodeGeneric(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if gv.(map[string]any)["resolution"] != "EXPIRED" || w.(avro.NamedSchema).FullName() != "helpdesk.tickets.TicketClosed" {
		t.Errorf("generic decode: %v as %s", gv, w.(avro.NamedSchema).FullName())
	}
}

// Malformed input yields typed, permanent errors; a registry outage does
// not count as permanent.
func TestDecodeErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	id := testkit.RegisterEvent(t, f.cl, "tickets-opened", testevents.Catalog(), info.Name)
	good, err := schemas.Encode(id, info.Schema, sampleTicket())
	if err != nil {
		t.Fatal(err)
	}
	otherID := f.register(t, "other", `{"type":"record","name":"TicketOpened","namespace":"helpdesk.tickets","fields":[{"name":"ticket_id","type":"int"}]}`)
	other, err := schemas.Encode(otherID, avro.MustParse(`{"type":"record","name":"X","fields":[{"name":"ticket_id","type":"int"}]}`), map[string]any{"ticket_id": 7})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, schemas.ErrShortBuffer},
		{"short header", []byte{0, 0, 0}, schemas.ErrShortBuffer},
		{"bad magic", append([]byte{1}, good[1:]...), schemas.ErrBadMagic},
		{"json instead of avro", []byte(`{"ticket_id":"x"}`), schemas.ErrBadMagic},
		{"unknown id", append(schemas.AppendHeader(nil, 987654), good[5:]...), schemas.ErrUnknownSchemaID},
		{"truncated body", good[:len(good)-3], schemas.ErrBadBody},
		{"trailing bytes", append(append([]byte{}, good...), 1, 2, 3), schemas.ErrBadBody},
		{"huge array length", append(schemas.AppendHeader(nil, id), 0x02, 'a', 0x02, 'b', 0xfe, 0xff, 0xff, 0xff, 0x0f), schemas.ErrBadBody},
		{"unresolvable writer", other, schemas.ErrUnresolvable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out testevents.TicketOpened
			err := f.serde.Decode(ctx, tc.in, &out)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !schemas.IsDecodeError(err) {
				t.Errorf("%v is not classified permanent", err)
			}
		})
	}

	t.Run("registry down is not permanent", func(t *testing.T) {
		cl, _ := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
		s := schemas.NewSerde(cl)
		var out testevents.TicketOpened
		err := s.Decode(ctx, good, &out)
		if err == nil || schemas.IsDecodeError(err) {
			t.Fatalf("got %v; want a non-permanent error", err)
		}
	})
}

// Decoding hostile bytes never panics and always classifies its failure.
func FuzzDecode(f *testing.F) {
	fx := newFixture(f)
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	id := testkit.RegisterEvent(f, fx.cl, "tickets-opened", testevents.Catalog(), info.Name)
	// The corpus (testdata/fuzz) writes TicketOpened's id as 1; the
	// registry gave 1 to the shared Attachment it references, so 1 is
	// read as TicketOpened's id, and id's own value as Attachment's.
	good, err := schemas.Encode(1, info.Schema, sampleTicket())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:7])
	f.Add([]byte{0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0, 0, 0, 0, 2})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= schemas.HeaderSize && b[0] == 0 {
			swap := map[uint32]uint32{1: uint32(id), uint32(id): 1}
			if to, ok := swap[binary.BigEndian.Uint32(b[1:5])]; ok {
				b = append(binary.BigEndian.AppendUint32([]byte{0}, to), b[5:]...)
			}
		}
		var out testevents.TicketOpened
		err := fx.serde.Decode(ctx, b, &out)
		if err != nil && !schemas.IsDecodeError(err) {
			t.Fatalf("unclassified error for % x: %v", b, err)
		}
	})
}

func BenchmarkEncodeTicketOpened(b *testing.B) {
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	v := sampleTicket()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = schemas.AppendEncode(buf[:0], 1, info.Schema, v)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTicketOpened(b *testing.B) {
	f := newFixture(b)
	info, _ := testevents.Catalog().Lookup("helpdesk.tickets.TicketOpened")
	id := testkit.RegisterEvent(b, f.cl, "tickets-opened", testevents.Catalog(), info.Name)
	enc, err := schemas.Encode(id, info.Schema, sampleTicket())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var out testevents.TicketOpened
	if err := f.serde.Decode(ctx, enc, &out); err != nil { // warm the caches
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := f.serde.Decode(ctx, enc, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func mustNew(t *testing.T, name string) schemas.Event {
	t.Helper()
	ev, ok := testevents.New(name)
	if !ok {
		t.Fatalf("no generated type for %s", name)
	}
	return ev
}

// countingSource counts the registry requests behind a Serde.
type countingSource struct {
	src      schemas.SchemaSource
	n        int
	versions int // SchemaByVersion calls (refs_test.go)
}

func (c *countingSource) SchemaByID(ctx context.Context, id int) (sr.Schema, error) {
	c.n++
	return c.src.SchemaByID(ctx, id)
}

// A stream of records with an unknown schema id costs one registry
// request per id, not one per record, and each still fails with
// ErrUnknownSchemaID naming the id.
func TestUnknownSchemaIDsNegativelyCached(t *testing.T) {
	f := newFixture(t)
	src := &countingSource{src: f.cl}
	serde := schemas.NewSerde(src)
	body := []byte{2, 'x'}
	for range 100 {
		for _, id := range []int{987654, 987655} {
			_, _, err := serde.DecodeGeneric(context.Background(), append(schemas.AppendHeader(nil, id), body...))
			var de *schemas.DecodeError
			if !errors.Is(err, schemas.ErrUnknownSchemaID) || !errors.As(err, &de) || de.ID != id {
				t.Fatalf("id %d: got %v", id, err)
			}
		}
	}
	if src.n != 2 {
		t.Errorf("%d registry requests for 200 records with 2 unknown ids, want 2", src.n)
	}
}

// Bodies of a recursive writer schema are walked within a budget before
// they are decoded: a linked list a million levels deep (2 MB) and a tree
// node with 200,000 children fail with ErrTooComplex at once instead of
// taking gigabytes or overflowing the stack (a fatal error); a legitimate
// nested value still decodes.
func TestRecursiveSchemaBombs(t *testing.T) {
	f := newFixture(t)
	list := f.register(t, "list-value", `{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}`)
	tree := f.register(t, "tree-value", `{"type":"record","name":"T","fields":[{"name":"kids","type":{"type":"array","items":"T"}}]}`)
	chain := func(depth int) []byte {
		b := schemas.AppendHeader(nil, list)
		for range depth {
			b = append(b, 0x02, 0x02) // v = 1, next = branch 1 (Node)
		}
		return append(b, 0x02, 0x00) // v = 1, next = null
	}
	ctx := context.Background()
	v, _, err := f.serde.DecodeGeneric(ctx, chain(10))
	if err != nil {
		t.Fatalf("a 10-deep list: %v", err)
	}
	depth := 0
	for m, _ := v.(map[string]any); m != nil; depth++ {
		next, _ := m["next"].(map[string]any)
		if inner, ok := next["Node"].(map[string]any); ok { // a union branch, named
			next = inner
		}
		m = next
	}
	if depth != 11 {
		t.Errorf("decoded %d nodes, want 11", depth)
	}
	wide := schemas.AppendHeader(nil, tree)
	wide = binary.AppendVarint(wide, 200_000)
	wide = append(wide, make([]byte, 200_000)...) // each child: an empty block list
	wide = append(wide, 0x00)
	for name, body := range map[string][]byte{"deep list": chain(1_000_000), "wide tree": wide} {
		start := time.Now()
		_, _, err := f.serde.DecodeGeneric(ctx, body)
		if !errors.Is(err, schemas.ErrTooComplex) || !errors.Is(err, schemas.ErrBadBody) {
			t.Errorf("%s (%d bytes): got %v, want ErrTooComplex", name, len(body), err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: refused after %v", name, took)
		}
		var into map[string]any
		if err := f.serde.DecodeAs(ctx, body, mustParse(t, body, f), &into); !errors.Is(err, schemas.ErrTooComplex) {
			t.Errorf("%s through DecodeAs: got %v", name, err)
		}
	}
}

func mustParse(t *testing.T, body []byte, f *fixture) avro.Schema {
	t.Helper()
	id, _, err := schemas.SplitHeader(body)
	if err != nil {
		t.Fatal(err)
	}
	w, err := f.serde.Writer(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// FuzzRecursiveDecode: any body under a recursive writer schema ends in a
// value or an error, within the budget, never a crash.
func FuzzRecursiveDecode(f *testing.F) {
	fx := newFixture(f)
	id := fx.register(f, "tree-value", `{"type":"record","name":"T","fields":[{"name":"n","type":["null","string","T"]},{"name":"kids","type":{"type":"array","items":"T"}},{"name":"m","type":{"type":"map","values":"T"}}]}`)
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{4, 4, 0, 0, 0, 0, 0})
	f.Add([]byte{4, 4, 0, 0, 0, 2, 0, 0, 0, 0})
	f.Add([]byte{0, 3, 0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		v, _, err := fx.serde.DecodeGeneric(context.Background(), append(schemas.AppendHeader(nil, id), body...))
		if err == nil && v == nil {
			t.Fatal("no value and no error")
		}
		if err != nil && !schemas.IsDecodeError(err) {
			t.Fatalf("a bad body is not a permanent error: %v", err)
		}
	})
}
