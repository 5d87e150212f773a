package compat

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The differential test's corpus: the hand-written pairs under
// testdata/pairs, one file per rule, plus pairs generated here by mutating a
// few base schemas. Nothing here states an expected verdict: Apache Avro Java
// is the oracle.

type corpusPair struct {
	ID     string          `json:"id"`
	Reader json.RawMessage `json:"reader"`
	Writer json.RawMessage `json:"writer"`
	// ReaderRefs and WriterRefs are the schemas each side references,
	// dependencies first: parsed before it in one name space, as
	// Confluent's AvroSchema does with a Schema.Parser (Java) and ParseWith
	// does here.
	ReaderRefs []json.RawMessage `json:"reader_refs,omitempty"`
	WriterRefs []json.RawMessage `json:"writer_refs,omitempty"`
	// Why says what a hand-written pair is about (not sent to Java).
	Why string `json:"why,omitempty"`
}

// loadHandWritten reads testdata/pairs/*.json, prefixing ids with the file
// name so that they are unique and say where to look.
func loadHandWritten(t *testing.T) []corpusPair {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "pairs", "*.json"))
	if err != nil {
		t.Fatalf("error listing hand-written pairs: %v", err)
	}
	sort.Strings(files)
	var out []corpusPair
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("error reading %s: %v", f, err)
		}
		var pairs []corpusPair
		if err := json.Unmarshal(data, &pairs); err != nil {
			t.Fatalf("error decoding %s: %v", f, err)
		}
		prefix := strings.TrimSuffix(filepath.Base(f), ".json")
		for _, p := range pairs {
			p.ID = prefix + "/" + p.ID
			out = append(out, p)
		}
	}
	return out
}

// obj is a JSON object under construction; schemas are built as values and
// marshalled, so a mutation can edit a fresh copy of its base.
type obj = map[string]any

func record(name string, fields ...obj) obj {
	fs := make([]any, len(fields))
	for i, f := range fields {
		fs[i] = f
	}
	return obj{"type": "record", "name": name, "fields": fs}
}

// field builds a field; extra holds further key/value pairs ("default", 0).
func field(name string, typ any, extra ...any) obj {
	f := obj{"name": name, "type": typ}
	for i := 0; i+1 < len(extra); i += 2 {
		f[extra[i].(string)] = extra[i+1]
	}
	return f
}

func enum(name string, symbols ...string) obj {
	return obj{"type": "enum", "name": name, "symbols": symbols}
}

func fixed(name string, size int) obj { return obj{"type": "fixed", "name": name, "size": size} }
func array(items any) obj             { return obj{"type": "array", "items": items} }
func mapOf(values any) obj            { return obj{"type": "map", "values": values} }
func union(branches ...any) []any     { return branches }

func with(o obj, kv ...any) obj {
	c := obj{}
	for k, v := range o {
		c[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func fieldsOf(r obj) []any { return r["fields"].([]any) }

// withFields returns a copy of record r with fields edited by fn (which gets
// a copy it may change).
func withFields(r obj, fn func([]any) []any) obj {
	return with(r, "fields", fn(slices.Clone(fieldsOf(r))))
}

func replaceField(r obj, name string, fn func(obj) obj) obj {
	return withFields(r, func(fs []any) []any {
		for i, f := range fs {
			if f.(obj)["name"] == name {
				fs[i] = fn(with(f.(obj)))
			}
		}
		return fs
	})
}

func addField(r obj, f obj) obj {
	return withFields(r, func(fs []any) []any { return append(fs, f) })
}

func removeField(r obj, name string) obj {
	return withFields(r, func(fs []any) []any {
		return slices.DeleteFunc(fs, func(f any) bool { return f.(obj)["name"] == name })
	})
}

func setType(r obj, name string, typ any) obj {
	return replaceField(r, name, func(f obj) obj { return with(f, "type", typ) })
}

// Base schemas. Each call returns a fresh value.

func payment() obj {
	return with(record("Payment",
		field("id", "string"),
		field("amount", "long"),
		field("currency", "string", "default", "EUR"),
		field("status", enum("Status", "PENDING", "PAID", "FAILED")),
		field("note", union("null", "string"), "default", nil),
		field("tags", array("string")),
		field("attrs", mapOf("long")),
		field("hash", fixed("MD5", 16)),
		field("createdAt", obj{"type": "long", "logicalType": "timestamp-millis"}),
		field("address", record("Address", field("street", "string"), field("zip", "int"))),
	), "namespace", "com.acme.billing")
}

func linkedList() obj {
	return record("Node", field("value", "int"), field("next", union("null", "Node"), "default", nil))
}

func tree() obj {
	return record("Tree", field("label", "string"), field("children", array("Tree")))
}

func mutual() obj {
	return record("A",
		field("n", "int"),
		field("b", union("null", record("B", field("m", "string"), field("a", union("null", "A"))))))
}

var primitives = []string{"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

// mutation is a changed copy of a base schema.
type mutation struct {
	name string
	base obj
	to   any
}

// generated returns the generated pairs: type matrices (each ordered pair
// once, so both directions) and structural mutations (each evaluated both
// ways: new reading old and old reading new).
func generated(t *testing.T) []corpusPair {
	t.Helper()
	var out []corpusPair
	add := func(id string, reader, writer any) {
		out = append(out, corpusPair{ID: "gen/" + id, Reader: mustJSON(t, reader), Writer: mustJSON(t, writer)})
	}

	// Every primitive against every primitive, in four settings.
	for _, r := range primitives {
		for _, w := range primitives {
			add(fmt.Sprintf("matrix/top/%s<-%s", r, w), r, w)
			add(fmt.Sprintf("matrix/field/%s<-%s", r, w),
				record("R", field("f", r)), record("R", field("f", w)))
			add(fmt.Sprintf("matrix/array/%s<-%s", r, w), array(r), array(w))
			if r != "null" {
				add(fmt.Sprintf("matrix/reader-union/%s<-%s", r, w), union("null", r), w)
			}
			if w != "null" {
				add(fmt.Sprintf("matrix/writer-union/%s<-%s", r, w), r, union("null", w))
			}
		}
	}

	// Logical types against the primitives they might be confused with.
	logicals := map[string]obj{
		"date":                   {"type": "int", "logicalType": "date"},
		"time-millis":            {"type": "int", "logicalType": "time-millis"},
		"time-micros":            {"type": "long", "logicalType": "time-micros"},
		"timestamp-millis":       {"type": "long", "logicalType": "timestamp-millis"},
		"timestamp-micros":       {"type": "long", "logicalType": "timestamp-micros"},
		"local-timestamp-millis": {"type": "long", "logicalType": "local-timestamp-millis"},
		"uuid":                   {"type": "string", "logicalType": "uuid"},
		"decimal-bytes":          {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
	}
	names := make([]string, 0, len(logicals))
	for n := range logicals {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, p := range []string{"int", "long", "float", "double", "bytes", "string"} {
			add(fmt.Sprintf("logical/%s<-%s", n, p), record("R", field("f", logicals[n])), record("R", field("f", p)))
			add(fmt.Sprintf("logical/%s<-%s", p, n), record("R", field("f", p)), record("R", field("f", logicals[n])))
		}
	}

	for _, m := range mutations() {
		add("mut/"+m.name+"/new-reads-old", m.to, m.base)
		add("mut/"+m.name+"/old-reads-new", m.base, m.to)
	}
	return out
}

func mutations() []mutation {
	p := payment()
	var ms []mutation
	mut := func(name string, base obj, to any) { ms = append(ms, mutation{name, base, to}) }

	// Fields added (and so, the other way, removed), with and without
	// defaults, for a spread of types.
	newFields := []struct {
		name string
		typ  any
		def  any
	}{
		{"string", "string", ""},
		{"int", "int", 0},
		{"double", "double", 1.5},
		{"bool", "boolean", true},
		{"bytes", "bytes", "\u00ff"},
		{"nullable", union("null", "string"), nil},
		{"enum", enum("Channel", "WEB", "APP"), "WEB"},
		{"array", array("int"), []any{}},
		{"map", mapOf("string"), obj{}},
		{"record", record("Meta", field("k", "string", "default", "")), obj{"k": "v"}},
		{"fixed", fixed("Salt", 4), "abcd"},
	}
	for _, nf := range newFields {
		mut("payment/add-"+nf.name+"-with-default", p, addField(p, field("extra", nf.typ, "default", nf.def)))
		mut("payment/add-"+nf.name+"-without-default", p, addField(p, field("extra", nf.typ)))
	}
	mut("payment/add-enum-with-enum-default-only", p,
		addField(p, field("extra", with(enum("Channel", "OTHER", "WEB"), "default", "OTHER"))))
	mut("payment/add-two-without-defaults", p,
		addField(addField(p, field("x1", "int")), field("x2", "string")))
	mut("payment/remove-required", p, removeField(p, "id"))
	mut("payment/remove-defaulted", p, removeField(p, "currency"))

	// Every field's type changed to every primitive.
	for _, f := range fieldsOf(p) {
		name := f.(obj)["name"].(string)
		for _, prim := range primitives {
			mut(fmt.Sprintf("payment/%s-to-%s", name, prim), p,
				replaceField(p, name, func(f obj) obj {
					g := with(f, "type", prim)
					delete(g, "default")
					return g
				}))
		}
	}

	// Renames.
	mut("payment/rename-field", p, replaceField(p, "amount", func(f obj) obj { return with(f, "name", "total") }))
	mut("payment/rename-field-with-alias", p, replaceField(p, "amount", func(f obj) obj {
		return with(f, "name", "total", "aliases", []string{"amount"})
	}))
	mut("payment/rename-field-with-alias-and-default", p, replaceField(p, "amount", func(f obj) obj {
		return with(f, "name", "total", "aliases", []string{"amount"}, "default", 0)
	}))
	mut("payment/rename-record", p, with(p, "name", "Charge"))
	mut("payment/rename-record-alias", p, with(p, "name", "Charge", "aliases", []string{"Payment"}))
	mut("payment/rename-record-alias-qualified", p, with(p, "name", "Charge", "aliases", []string{"com.acme.billing.Payment"}))
	mut("payment/rename-record-alias-other-namespace", p, with(p, "name", "Charge", "aliases", []string{"org.other.Payment"}))
	mut("payment/change-namespace", p, with(p, "namespace", "com.acme.payments"))
	mut("payment/drop-namespace", p, func() obj { q := with(p); delete(q, "namespace"); return q }())
	mut("payment/rename-nested-record", p, replaceField(p, "address", func(f obj) obj {
		return with(f, "type", with(f["type"].(obj), "name", "PostalAddress"))
	}))
	mut("payment/rename-nested-record-alias", p, replaceField(p, "address", func(f obj) obj {
		return with(f, "type", with(f["type"].(obj), "name", "PostalAddress", "aliases", []string{"Address"}))
	}))

	// Enums.
	status := func(e obj) obj { return setType(p, "status", e) }
	mut("enum/add-symbol", p, status(enum("Status", "PENDING", "PAID", "FAILED", "REFUNDED")))
	mut("enum/remove-symbol", p, status(enum("Status", "PENDING", "PAID")))
	mut("enum/remove-symbol-with-default", p, status(with(enum("Status", "PENDING", "PAID"), "default", "PENDING")))
	mut("enum/replace-symbol", p, status(enum("Status", "PENDING", "PAID", "DECLINED")))
	mut("enum/replace-symbol-with-default", p, status(with(enum("Status", "PENDING", "PAID", "DECLINED"), "default", "PENDING")))
	mut("enum/reorder", p, status(enum("Status", "FAILED", "PAID", "PENDING")))
	mut("enum/rename", p, status(enum("State", "PENDING", "PAID", "FAILED")))
	mut("enum/rename-alias", p, status(with(enum("State", "PENDING", "PAID", "FAILED"), "aliases", []string{"Status"})))
	mut("enum/to-string", p, setType(p, "status", "string"))

	// Fixed.
	hash := func(f obj) obj { return setType(p, "hash", f) }
	mut("fixed/grow", p, hash(fixed("MD5", 20)))
	mut("fixed/shrink", p, hash(fixed("MD5", 8)))
	mut("fixed/rename", p, hash(fixed("Digest", 16)))
	mut("fixed/rename-alias", p, hash(with(fixed("Digest", 16), "aliases", []string{"MD5"})))
	mut("fixed/rename-and-resize", p, hash(fixed("Digest", 32)))
	mut("fixed/to-bytes", p, setType(p, "hash", "bytes"))

	// Unions.
	mut("union/wrap-amount-null-first", p, setType(p, "amount", union("null", "long")))
	mut("union/wrap-amount-null-last", p, setType(p, "amount", union("long", "null")))
	mut("union/wrap-amount-with-string", p, setType(p, "amount", union("string", "long")))
	mut("union/unwrap-note", p, replaceField(p, "note", func(f obj) obj {
		g := with(f, "type", "string")
		delete(g, "default")
		return g
	}))
	mut("union/reorder-note", p, replaceField(p, "note", func(f obj) obj {
		return with(f, "type", union("string", "null"), "default", "")
	}))
	mut("union/widen-note", p, setType(p, "note", union("null", "string", "int")))
	mut("union/note-string-to-bytes", p, setType(p, "note", union("null", "bytes")))
	mut("union/note-to-record-branch", p, setType(p, "note", union("null", "string", record("Memo", field("text", "string")))))
	mut("union/address-nullable", p, replaceField(p, "address", func(f obj) obj {
		return with(f, "type", union("null", f["type"]), "default", nil)
	}))
	mut("union/address-or-string", p, replaceField(p, "address", func(f obj) obj {
		return with(f, "type", union("string", f["type"]), "default", "")
	}))
	mut("union/top-level-wrap", p, union("null", p))

	// Nested types.
	addr := func(fn func(obj) obj) obj {
		return replaceField(p, "address", func(f obj) obj { return with(f, "type", fn(f["type"].(obj))) })
	}
	mut("nested/zip-to-string", p, addr(func(a obj) obj { return setType(a, "zip", "string") }))
	mut("nested/zip-to-long", p, addr(func(a obj) obj { return setType(a, "zip", "long") }))
	mut("nested/add-city-no-default", p, addr(func(a obj) obj { return addField(a, field("city", "string")) }))
	mut("nested/add-city-default", p, addr(func(a obj) obj { return addField(a, field("city", "string", "default", "")) }))
	mut("nested/tags-to-int", p, setType(p, "tags", array("int")))
	mut("nested/tags-to-bytes", p, setType(p, "tags", array("bytes")))
	mut("nested/tags-to-map", p, setType(p, "tags", mapOf("string")))
	mut("nested/tags-of-records", p, setType(p, "tags", array(record("Tag", field("k", "string")))))
	mut("nested/attrs-to-double", p, setType(p, "attrs", mapOf("double")))
	mut("nested/attrs-to-int", p, setType(p, "attrs", mapOf("int")))
	mut("nested/attrs-nullable-values", p, setType(p, "attrs", mapOf(union("null", "long"))))
	mut("nested/attrs-to-array", p, setType(p, "attrs", array("long")))
	mut("nested/createdAt-micros", p, setType(p, "createdAt", obj{"type": "long", "logicalType": "timestamp-micros"}))
	mut("nested/createdAt-date", p, setType(p, "createdAt", obj{"type": "int", "logicalType": "date"}))
	mut("nested/createdAt-string", p, setType(p, "createdAt", "string"))
	mut("nested/amount-decimal", p, setType(p, "amount", obj{"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}))

	// Recursive schemas.
	l := linkedList()
	mut("list/value-long", l, setType(l, "value", "long"))
	mut("list/value-string", l, setType(l, "value", "string"))
	mut("list/add-field-default", l, addField(l, field("tag", "string", "default", "")))
	mut("list/add-field-no-default", l, addField(l, field("tag", "string")))
	mut("list/rename-alias", l, with(setType(l, "next", union("null", "Link")), "name", "Link", "aliases", []string{"Node"}))
	mut("list/rename", l, with(setType(l, "next", union("null", "Link")), "name", "Link"))
	mut("list/next-required", l, replaceField(l, "next", func(f obj) obj {
		g := with(f, "type", "Node")
		delete(g, "default")
		return g
	}))
	mut("list/next-array", l, replaceField(l, "next", func(f obj) obj {
		return with(f, "type", array("Node"), "default", []any{})
	}))
	mut("list/doubly-linked", l, addField(l, field("prev", union("null", "Node"), "default", nil)))
	mut("list/doubly-linked-no-default", l, addField(l, field("prev", union("null", "Node"))))
	tr := tree()
	mut("tree/label-bytes", tr, setType(tr, "label", "bytes"))
	mut("tree/label-int", tr, setType(tr, "label", "int"))
	mut("tree/children-map", tr, setType(tr, "children", mapOf("Tree")))
	mut("tree/add-weight", tr, addField(tr, field("weight", "double")))
	mut("tree/children-nullable", tr, setType(tr, "children", array(union("null", "Tree"))))
	mu := mutual()
	inner := func(fn func(obj) obj) obj {
		return replaceField(mu, "b", func(f obj) obj {
			u := f["type"].([]any)
			return with(f, "type", union(u[0], fn(u[1].(obj))))
		})
	}
	mut("mutual/inner-m-to-int", mu, inner(func(b obj) obj { return setType(b, "m", "int") }))
	mut("mutual/inner-add-no-default", mu, inner(func(b obj) obj { return addField(b, field("k", "long")) }))
	mut("mutual/inner-a-required", mu, inner(func(b obj) obj { return setType(b, "a", "A") }))
	mut("mutual/outer-n-to-long", mu, setType(mu, "n", "long"))
	mut("mutual/inner-rename-alias", mu, inner(func(b obj) obj { return with(b, "name", "B2", "aliases", []string{"B"}) }))
	return ms
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("error encoding corpus schema: %v", err)
	}
	return b
}
