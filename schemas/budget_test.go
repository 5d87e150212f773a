package schemas_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/internal/testevents"
	"github.com/eventline/eventline/internal/testkit"
	"github.com/eventline/eventline/schemas"
)

func varints(ns ...int64) []byte {
	var b []byte
	for _, n := range ns {
		b = binary.AppendVarint(b, n)
	}
	return b
}

// exact is a budget whose per-byte bound never binds: only MaxValues and
// MaxDepth count.
func exact(values, depth int) schemas.Budget {
	return schemas.Budget{MaxValues: values, MaxDepth: depth, MaxValuesPerByte: 1 << 20}
}

// Budget.Check on every shape: a value that holds exactly MaxValues values
// (or nests exactly MaxDepth levels) passes, one more fails with
// ErrTooComplex; malformed bodies fail with ErrBadBody.
func TestBudgetEveryShape(t *testing.T) {
	optionals := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf(`{"name":"f%d","type":["null","int"]}`, i)
		}
		return s
	}
	nested := func(levels int) string { // array<array<…<null>>>
		return strings.Repeat(`{"type":"array","items":`, levels) + `"null"` + strings.Repeat("}", levels)
	}
	oneEach := func(levels int) []byte { // one item per level
		var b []byte
		for range levels {
			b = append(b, varints(1)...)
		}
		for range levels {
			b = append(b, 0)
		}
		return b
	}
	everyType := `{"type":"record","name":"All","fields":[
		{"name":"n","type":"null"},{"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
		{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"by","type":"bytes"},{"name":"s","type":"string"},
		{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},{"name":"x","type":{"type":"fixed","name":"X","size":3}},
		{"name":"u","type":["null","string"]},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}]}`
	everyBody := append([]byte{1}, varints(-7, 1<<40)...)
	everyBody = append(everyBody, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	everyBody = append(everyBody, varints(2)...)
	everyBody = append(everyBody, 'h', 'i')
	everyBody = append(everyBody, varints(3)...)
	everyBody = append(everyBody, 'a', 'b', 'c')
	everyBody = append(everyBody, varints(1)...)
	everyBody = append(everyBody, 'x', 'y', 'z')
	everyBody = append(everyBody, varints(1, 1)...)
	everyBody = append(everyBody, 'q')
	everyBody = append(everyBody, varints(1_790_000_000_000)...)
	list := `{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}`
	listOf := func(n int) []byte { // n nodes
		return append(varints(slicesOf(n-1, 1)...), 0)
	}
	for _, tc := range []struct {
		name   string
		schema string
		body   []byte
		values int // the values it holds
		depth  int // its nesting (containers)
	}{
		{"array<null>", `{"type":"array","items":"null"}`, append(varints(1000), 0), 1 + 1000, 1},
		{"array<null>, two blocks", `{"type":"array","items":"null"}`, append(varints(600, 400), 0), 1 + 1000, 1},
		{"array<array<null>>", nested(2), append(varints(3, 10, 0, 10, 0, 10, 0), 0), 1 + 3*(1+10), 2},
		{"map<array<null>>", `{"type":"map","values":{"type":"array","items":"null"}}`,
			append(varints(2, 0, 5, 0, 1), 'k', 10, 0, 0), 1 + 2*(1+1+5), 2},
		{"map<string>", `{"type":"map","values":"string"}`, append(varints(1, 1), 'k', 2, 'v', 0), 1 + 2, 1},
		{"wide record", `{"type":"record","name":"W","fields":[` + strings.Join(optionals(300), ",") + `]}`, make([]byte, 300), 1 + 300*2, 2},
		{"array of wide records", `{"type":"array","items":{"type":"record","name":"W","fields":[` + strings.Join(optionals(300), ",") + `]}}`,
			append(append(varints(10), make([]byte, 3000)...), 0), 1 + 10*(1+300*2), 3},
		{"union", `["null",{"type":"array","items":"null"}]`, append(varints(1, 4), 0), 1 + 1 + 4, 2},
		{"every type", everyType, everyBody, 1 + 12 + 1, 2},
		{"negative block count with its byte size", `{"type":"array","items":"int"}`, append(varints(-3, 3, 1, 2, 3), 0), 1 + 3, 1},
		{"map, negative block count with its byte size", `{"type":"map","values":"int"}`, append(varints(-1, 3, 1), 'k', 2, 0), 1 + 2, 1},
		{"recursive list", list, listOf(20), 20*2 + 1, 20 * 2}, // a record and a union per node, the last null
		{"nested arrays", nested(10), oneEach(10), 10 + 1, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := avro.MustParse(tc.schema)
			if err := exact(tc.values, tc.depth).Check(s, tc.body); err != nil {
				t.Errorf("at the limits (%d values, depth %d): %v", tc.values, tc.depth, err)
			}
			if err := exact(tc.values-1, tc.depth).Check(s, tc.body); !errors.Is(err, schemas.ErrTooComplex) {
				t.Errorf("one value over: got %v, want ErrTooComplex", err)
			}
			if tc.depth > 1 {
				if err := exact(tc.values, tc.depth-1).Check(s, tc.body); !errors.Is(err, schemas.ErrTooComplex) {
					t.Errorf("one level too deep: got %v, want ErrTooComplex", err)
				}
			}
			for i := range tc.body { // every truncation
				if err := exact(tc.values, tc.depth).Check(s, tc.body[:i]); !errors.Is(err, schemas.ErrBadBody) {
					t.Fatalf("truncated to %d of %d bytes: got %v, want ErrBadBody", i, len(tc.body), err)
				}
			}
			if err := exact(tc.values, tc.depth).Check(s, append(tc.body, 0)); !errors.Is(err, schemas.ErrBadBody) {
				t.Errorf("a byte left over: got %v, want ErrBadBody", err)
			}
			// hamba/avro reads what the walk accepted.
			var v any
			if err := avro.Unmarshal(s, tc.body, &v); err != nil {
				t.Errorf("hamba/avro refuses what the walk accepted: %v", err)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		schema string
		body   []byte
	}{
		{"a block byte size that lies", `{"type":"array","items":"int"}`, append(varints(-3, 4, 1, 2, 3), 0)},
		{"a negative block byte size", `{"type":"array","items":"int"}`, append(varints(-3, -3, 1, 2, 3), 0)},
		{"a block byte size past the end", `{"type":"array","items":"null"}`, append(varints(-3, 100), 0)},
		{"the most negative block count", `{"type":"array","items":"null"}`, append(varints(math.MinInt64, 0), 0)},
		{"a union branch the schema lacks", `["null","int"]`, varints(2)},
		{"a negative union branch", `["null","int"]`, varints(-1)},
		{"a negative string length", `"string"`, varints(-1)},
		{"a string longer than the body", `"string"`, varints(10, 1)},
		{"an overlong varint", `"long"`, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	} {
		if err := (schemas.Budget{}).Check(avro.MustParse(tc.schema), tc.body); !errors.Is(err, schemas.ErrBadBody) || errors.Is(err, schemas.ErrTooComplex) {
			t.Errorf("%s: got %v, want ErrBadBody", tc.name, err)
		}
	}

	// Counts are checked before they are looped over: a block of 2^62
	// nulls is a few bytes and fails at once.
	start := time.Now()
	if err := (schemas.Budget{}).Check(avro.MustParse(nested(1)), append(varints(1<<62), 0)); !errors.Is(err, schemas.ErrTooComplex) {
		t.Errorf("2^62 nulls: got %v", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("2^62 nulls refused after %v", took)
	}

	// The per-byte bound: 32 + 4 values per byte by default.
	arr := avro.MustParse(nested(1))
	for _, n := range []int{10, 100, 1000} {
		body := append(varints(int64(n)), 0)
		limit := 32 + schemas.DefaultMaxValuesPerByte*len(body)
		err := (schemas.Budget{}).Check(arr, body)
		if fits := 1+n <= limit; fits != (err == nil) || (err != nil && !errors.Is(err, schemas.ErrTooComplex)) {
			t.Errorf("%d nulls in %d bytes (limit %d values): got %v", n, len(body), limit, err)
		}
	}
}

func slicesOf(n int, v int64) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// Every hostile shape of the consumer's matrix is refused by a Serde with
// the default budget, in milliseconds and a few kilobytes; through
// DecodeGeneric and DecodeAs alike.
func TestNestedBombsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, hv := range testkit.HostileValues() {
		id := f.register(t, strings.NewReplacer("<", "-", ">", "-", " ", "", ",", "").Replace(hv.Name)+"-value", hv.Schema)
		framed := append(schemas.AppendHeader(nil, id), hv.Body...)
		if _, _, err := f.serde.DecodeGeneric(ctx, framed); err != nil && !schemas.IsDecodeError(err) { // warm the schema cache
			t.Fatal(err)
		}
		allocated, err := allocs(func() error { _, _, err := f.serde.DecodeGeneric(ctx, framed); return err })
		if !errors.Is(err, schemas.ErrTooComplex) || !errors.Is(err, schemas.ErrBadBody) {
			t.Errorf("%s: got %v, want ErrTooComplex", hv.Name, err)
		}
		var into any
		if err := f.serde.DecodeAs(ctx, framed, mustParse(t, framed, f), &into); !errors.Is(err, schemas.ErrTooComplex) {
			t.Errorf("%s through DecodeAs: got %v", hv.Name, err)
		}
		s := mustParse(t, framed, f)
		if err := (schemas.Budget{MaxValuesPerByte: 1 << 20}).Check(s, hv.Body); !errors.Is(err, schemas.ErrTooComplex) {
			t.Errorf("%s, MaxValues alone: got %v", hv.Name, err)
		}
		t.Logf("%s: refused, %d bytes allocated: %v", hv.Name, allocated, err)
		if allocated > 64<<10 {
			t.Errorf("%s: %d bytes allocated refusing it", hv.Name, allocated)
		}
	}
}

// allocs runs fn and returns the bytes the process allocated meanwhile.
func allocs(fn func() error) (uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// mapSource serves one schema under id 1.
type mapSource string

func (m mapSource) SchemaByID(context.Context, int) (sr.Schema, error) {
	return sr.Schema{Schema: string(m)}, nil
}

// fuzzBudget keeps each decode of FuzzNestedSchemas small.
var fuzzBudget = schemas.Budget{MaxValues: 20_000}

// allocBound is what a generic decode of body may allocate once it has
// passed the walk: 256 bytes per value the budget allows, the body's
// bytes (strings) and 64 KiB for the decoder's own state.
func allocBound(body []byte) uint64 {
	b := fuzzBudget
	values := min(b.MaxValues, 32+schemas.DefaultMaxValuesPerByte*len(body))
	return 64<<10 + 256*uint64(values) + 2*uint64(len(body))
}

// FuzzNestedSchemas generates a writer schema (arrays, maps, unions, narrow,
// wide and recursive records, nested up to five levels) from shape, and a
// body for it from choices (choices themselves when raw): the walk either
// refuses the body, or hamba/avro's generic decode of it allocates within
// allocBound; nothing panics. The seeds (the matrix's shapes among them)
// run as a normal test.
func FuzzNestedSchemas(f *testing.F) {
	medium := bytes.Repeat([]byte{0, 252}, 4096) // one block of 4,032 items, at every level
	for _, shape := range [][]byte{
		{shapeArray, shapeArray, 0},            // array<array<null>>
		{shapeMap, shapeArray, 0},              // map<array<null>>
		{shapeArray, shapeRecord | 24<<3, 200}, // array<wide record of nulls>
		{shapeArray, shapeArray, shapeRecord | 31<<3, 100, shapeUnion, shapeArray, 0}, // array<array<wide record>>
		{shapeArray, 12 << 3},           // array<empty record>
		{shapeUnion | 8, shapeArray, 0}, // [null, array<null>, string]
		{shapeRecur, shapeMap, 8 << 3},  // recursive, v map<string>
		{shapeRecord | 3<<3, shapeArray, 3 << 3, shapeMap, 4 << 3, shapeUnion, 9 << 3, 1, 2}, // narrow record
		{shapeArray, 11 << 3}, // array<fixed(0)>
	} {
		f.Add(shape, medium, false)
		f.Add(shape, []byte{1, 6, 6, 6, 6, 6, 6, 6, 6}, false) // two blocks of nearly 2^20
		f.Add(shape, []byte{0, 0x1f, 0, 0x1f, 0, 0x1f}, false) // negative counts, true sizes
		f.Add(shape, []byte{0, 0x3f, 0, 0x3f, 0, 0x3f}, false) // negative counts, lying sizes
		f.Add(shape, []byte{0, 1, 2, 3, 9, 1, 4, 200, 17}, false)
	}
	f.Add([]byte{shapeArray, shapeArray, 0}, []byte{80, 254, 255, 127, 0, 0}, true)
	f.Fuzz(func(t *testing.T, shape, choices []byte, raw bool) {
		if len(shape) > 1<<10 || len(choices) > 1<<16 {
			return
		}
		s, text := randomSchema(shape)
		body := choices
		if !raw {
			g := &bodyGen{bytesIn: choices}
			g.value(s, 0)
			body = g.out
		}
		serde := schemas.NewSerde(mapSource(text), schemas.WithBudget(fuzzBudget))
		framed := append(schemas.AppendHeader(nil, 1), body...)
		walkErr := fuzzBudget.Check(s, body)
		if _, _, err := serde.DecodeGeneric(context.Background(), framed); err != nil && !schemas.IsDecodeError(err) { // warm the caches
			t.Fatalf("not a permanent error: %v", err)
		}
		allocated, err := allocs(func() error { _, _, err := serde.DecodeGeneric(context.Background(), framed); return err })
		switch {
		case walkErr != nil && err == nil:
			t.Fatalf("the walk refused the body (%v), the Serde decoded it", walkErr)
		case walkErr != nil:
			return
		case allocated > allocBound(body):
			t.Fatalf("schema %s, %d-byte body: the decode allocated %d bytes, over %d (%v)", text, len(body), allocated, allocBound(body), err)
		}
	})
}

// The walk against the decode it guards, for the test catalogue's events
// (typed decode into the generated types, bodies from typicalBody): report
// the ratio of the walk's ns/op to the decode's.
func BenchmarkBudget(b *testing.B) {
	for _, info := range testevents.Catalog().All() {
		ev := mustNewB(b, info.Name)
		body := typicalBody(info.Schema)
		b.Run(info.Name+"/walk", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := (schemas.Budget{}).Check(info.Schema, body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(info.Name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := avro.Unmarshal(info.Schema, body, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustNewB(b *testing.B, name string) schemas.Event {
	ev, ok := testevents.New(name)
	if !ok {
		b.Fatalf("no generated type for %s", name)
	}
	return ev
}

// typicalBody is a body of s as an event would fill it: 36-character
// strings (UUIDs), three-item arrays, non-null union branches.
func typicalBody(s avro.Schema) []byte {
	var out []byte
	var fill func(avro.Schema)
	fill = func(s avro.Schema) {
		switch t := s.(type) {
		case *avro.RefSchema:
			fill(t.Schema())
		case *avro.RecordSchema:
			for _, f := range t.Fields() {
				fill(f.Type())
			}
		case *avro.UnionSchema:
			i := len(t.Types()) - 1
			out = binary.AppendVarint(out, int64(i))
			fill(t.Types()[i])
		case *avro.ArraySchema:
			out = binary.AppendVarint(out, 3)
			for range 3 {
				fill(t.Items())
			}
			out = append(out, 0)
		case *avro.MapSchema:
			out = binary.AppendVarint(out, 3)
			for i := range 3 {
				out = append(out, 2, 'k', byte('0'+i))
				fill(t.Values())
			}
			out = append(out, 0)
		case *avro.EnumSchema:
			out = append(out, 0)
		case *avro.FixedSchema:
			out = append(out, make([]byte, t.Size())...)
		case *avro.PrimitiveSchema:
			switch t.Type() {
			case avro.Boolean:
				out = append(out, 1)
			case avro.Int:
				out = binary.AppendVarint(out, 4998)
			case avro.Long:
				out = binary.AppendVarint(out, 1_790_000_000_123)
			case avro.Float:
				out = append(out, 0, 0, 0x80, 0x3f)
			case avro.Double:
				out = append(out, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f)
			case avro.Bytes:
				out = append(out, 2, 0x01)
			case avro.String:
				out = binary.AppendVarint(out, 36)
				out = append(out, "6f1c3a52-8a8e-4a57-9d8e-0c7b2f1a9e01"...)
			}
		}
	}
	fill(s)
	return out
}
