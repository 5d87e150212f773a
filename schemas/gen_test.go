package schemas_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/hamba/avro/v2"
)

// Generators of schemas and bodies for the budget's tests and fuzz target.

// shapeGen builds a writer schema from a fuzzer's bytes: arrays, maps,
// unions and records (narrow, wide, recursive) nested up to five levels,
// primitives at the leaves. Each byte picks a node; when they run out, the
// rest are nulls.
type shapeGen struct {
	bytesIn
	names int
}

// bytesIn hands out a fuzzer's bytes one at a time, then zeros.
type bytesIn []byte

func (b *bytesIn) next() byte {
	if len(*b) == 0 {
		return 0
	}
	c := (*b)[0]
	*b = (*b)[1:]
	return c
}

func (g *shapeGen) name() string { g.names++; return fmt.Sprintf("R%d", g.names) }

// Shape bytes: c%8 picks the node, c>>3 its variant.
const (
	shapeLeaf   = 0 // 0, 1, 2
	shapeArray  = 3
	shapeMap    = 4
	shapeUnion  = 5
	shapeRecord = 6 // c>>3 >= 24: wide
	shapeRecur  = 7
)

func (g *shapeGen) schema(depth int) any {
	c := g.next()
	if depth >= 5 || c%8 < shapeArray {
		return g.leaf(c >> 3)
	}
	switch c % 8 {
	case shapeArray:
		return map[string]any{"type": "array", "items": g.schema(depth + 1)}
	case shapeMap:
		return map[string]any{"type": "map", "values": g.schema(depth + 1)}
	case shapeUnion:
		x := g.schema(depth + 1)
		if _, isUnion := x.([]any); isUnion || x == "null" {
			x = "long"
		}
		if x == "string" || c&8 == 0 {
			return []any{"null", x}
		}
		return []any{"null", x, "string"}
	case shapeRecur: // a record that holds itself through a union and an array
		n := g.name()
		return map[string]any{"type": "record", "name": n, "fields": []any{
			map[string]any{"name": "v", "type": g.schema(depth + 1)},
			map[string]any{"name": "next", "type": []any{"null", n}},
			map[string]any{"name": "kids", "type": map[string]any{"type": "array", "items": n}},
		}}
	}
	width := 1 + int(c>>3)%5
	if c>>3 >= 24 {
		width = 50 + int(g.next()) // wide
	}
	fields := make([]any, width)
	for i := range fields {
		var t any
		if i < 3 {
			t = g.schema(depth + 1)
		} else {
			t = g.leaf(g.next())
		}
		fields[i] = map[string]any{"name": fmt.Sprintf("f%d", i), "type": t}
	}
	return map[string]any{"type": "record", "name": g.name(), "fields": fields}
}

func (g *shapeGen) leaf(v byte) any {
	switch i := v % 13; i {
	case 10:
		return map[string]any{"type": "enum", "name": g.name(), "symbols": []string{"A", "B", "C"}}
	case 11:
		return map[string]any{"type": "fixed", "name": g.name(), "size": int(v>>4) % 3}
	case 12:
		return map[string]any{"type": "record", "name": g.name(), "fields": []any{}}
	default:
		return []string{"null", "null", "boolean", "int", "long", "float", "double", "bytes", "string", "string"}[i]
	}
}

// randomSchema is the schema shape describes (a record or a container at
// the root).
func randomSchema(shape []byte) (avro.Schema, string) {
	g := &shapeGen{bytesIn: shape}
	root := g.schema(0)
	b, _ := json.Marshal(root)
	s, err := avro.ParseWithCache(string(b), "", &avro.SchemaCache{})
	if err != nil {
		panic(fmt.Sprintf("generated schema %s: %v", b, err))
	}
	return s, string(b)
}

// bodyGen writes a body for a schema, its choices (counts, branches,
// lengths, and whether to lie) read from a fuzzer's bytes: mostly valid,
// with huge, negative and nested block counts.
type bodyGen struct {
	bytesIn // choices
	out     []byte
}

const maxGenBody = 32 << 10

func (g *bodyGen) long(n int64) { g.out = binary.AppendVarint(g.out, n) }

func (g *bodyGen) value(s avro.Schema, depth int) {
	if len(g.out) > maxGenBody {
		return // truncated
	}
	switch t := s.(type) {
	case *avro.RefSchema:
		g.value(t.Schema(), depth)
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			g.value(f.Type(), depth+1)
		}
	case *avro.UnionSchema:
		i := int64(g.next()) % int64(len(t.Types())+1) // one in n+1: a branch it lacks
		if depth > 6 {
			i = 0 // null: recursion ends
		}
		g.long(i)
		if i < int64(len(t.Types())) {
			g.value(t.Types()[i], depth+1)
		}
	case *avro.ArraySchema:
		g.blocks(func() { g.value(t.Items(), depth+1) }, depth)
	case *avro.MapSchema:
		g.blocks(func() { g.long(1); g.out = append(g.out, 'k'); g.value(t.Values(), depth+1) }, depth)
	case *avro.EnumSchema:
		g.long(int64(g.next() % 4))
	case *avro.FixedSchema:
		g.out = append(g.out, make([]byte, t.Size())...)
	case *avro.PrimitiveSchema:
		switch t.Type() {
		case avro.Boolean:
			g.out = append(g.out, g.next()&1)
		case avro.Int, avro.Long:
			g.long(int64(g.next()))
		case avro.Float:
			g.out = append(g.out, 0, 0, 0, 0)
		case avro.Double:
			g.out = append(g.out, 0, 0, 0, 0, 0, 0, 0, 0)
		case avro.Bytes, avro.String:
			n := int64(g.next() % 8)
			g.long(n)
			g.out = append(g.out, make([]byte, n)...)
		}
	}
}

// blocks writes one or two blocks of an array or a map: small, medium or
// huge counts, some with a byte size (true or not), then the end marker.
func (g *bodyGen) blocks(item func(), depth int) {
	if depth > 6 {
		g.long(0)
		return
	}
	for range 1 + int(g.next()%2) {
		c := g.next()
		var n int64
		switch c % 8 {
		case 0:
			g.long(0)
			return
		case 1, 2, 3:
			n = int64(c%4) + 1
		case 4, 5:
			n = int64(c) << (c % 8) // medium: up to 8 Ki
		case 6:
			n = 1<<20 - int64(c) // hamba/avro's cap on one array: its items mostly absent, unless they take no bytes
		case 7: // negative count with a byte size, true or (one in four) not
			n = int64(c%4) + 1
			outer := g.out
			g.out = nil
			for range n {
				item()
			}
			items := g.out
			g.out = outer
			size := int64(len(items))
			if c&0x18 == 0x18 {
				size += 3
			}
			g.long(-n)
			g.long(size)
			g.out = append(g.out, items...)
			continue
		}
		g.long(n)
		for range min(n, 4096) {
			if len(g.out) > maxGenBody {
				return
			}
			item()
		}
	}
	g.long(0)
}
