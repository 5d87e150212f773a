package compat

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// want is one expected incompatibility: its kind, Java's location, our
// human path, and words its message and hint must contain.
type want struct {
	kind     Kind
	location string
	path     string
	message  []string
	hint     []string
}

func mustParse(t *testing.T, text string) avro.Schema {
	t.Helper()
	s, err := Parse(text)
	if err != nil {
		t.Fatalf("error parsing schema %s: %v", text, err)
	}
	return s
}

// rec wraps field JSON into a record named R.
func rec(fields ...string) string {
	return `{"type":"record","name":"R","fields":[` + strings.Join(fields, ",") + `]}`
}

func checkWants(t *testing.T, got []Incompatibility, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d incompatibilities, want %d:\n%s", len(got), len(wants), dump(got))
	}
	for i, w := range wants {
		g := got[i]
		if g.Kind != w.kind || g.Location != w.location || g.Path != w.path {
			t.Errorf("incompatibility %d = %s at %s (%s), want %s at %s (%s)", i, g.Kind, g.Location, g.Path, w.kind, w.location, w.path)
		}
		for _, s := range w.message {
			if !strings.Contains(g.Message, s) {
				t.Errorf("incompatibility %d message %q lacks %q", i, g.Message, s)
			}
		}
		for _, s := range w.hint {
			if !strings.Contains(g.Hint, s) {
				t.Errorf("incompatibility %d hint %q lacks %q", i, g.Hint, s)
			}
		}
		if g.Message == "" || g.Hint == "" {
			t.Errorf("incompatibility %d has an empty message or hint: %+v", i, g)
		}
	}
}

func dump(incs []Incompatibility) string {
	var b strings.Builder
	for _, inc := range incs {
		fmt.Fprintf(&b, "  %s %s %s: %s — %s\n", inc.Kind, inc.Location, inc.Path, inc.Message, inc.Hint)
	}
	return b.String()
}

func TestCheckPairRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, reader, writer string
		want                 []want
	}{
		// Promotions.
		{name: "int as long", reader: `"long"`, writer: `"int"`},
		{name: "int as float", reader: `"float"`, writer: `"int"`},
		{name: "int as double", reader: `"double"`, writer: `"int"`},
		{name: "long as float", reader: `"float"`, writer: `"long"`},
		{name: "long as double", reader: `"double"`, writer: `"long"`},
		{name: "float as double", reader: `"double"`, writer: `"float"`},
		{name: "string as bytes", reader: `"bytes"`, writer: `"string"`},
		{name: "bytes as string", reader: `"string"`, writer: `"bytes"`},
		{name: "long as int", reader: `"int"`, writer: `"long"`, want: []want{
			{kind: TypeMismatch, location: "/", path: "/", message: []string{"int", "long"}, hint: []string{"long, float or double"}},
		}},
		{name: "double as float", reader: `"float"`, writer: `"double"`, want: []want{{kind: TypeMismatch, location: "/", path: "/"}}},
		{name: "float as long", reader: `"long"`, writer: `"float"`, want: []want{{kind: TypeMismatch, location: "/", path: "/"}}},
		{name: "int as string", reader: `"string"`, writer: `"int"`, want: []want{{kind: TypeMismatch, location: "/", path: "/"}}},

		// Logical types are ignored.
		{name: "timestamp-millis as long", reader: `"long"`, writer: `{"type":"long","logicalType":"timestamp-millis"}`},
		{name: "date as timestamp-micros", reader: `{"type":"long","logicalType":"timestamp-micros"}`, writer: `{"type":"int","logicalType":"date"}`},
		{name: "decimal precision changed",
			reader: `{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}`,
			writer: `{"type":"bytes","logicalType":"decimal","precision":9,"scale":0}`},
		{name: "timestamp as date", reader: `{"type":"int","logicalType":"date"}`, writer: `{"type":"long","logicalType":"timestamp-millis"}`,
			want: []want{{kind: TypeMismatch, location: "/", path: "/", message: []string{"int (date)", "long (timestamp-millis)"}}}},

		// Named types.
		{name: "namespace alone differs",
			reader: `{"type":"record","name":"P","namespace":"b","fields":[]}`,
			writer: `{"type":"record","name":"P","namespace":"a","fields":[]}`},
		{name: "record renamed",
			reader: `{"type":"record","name":"Q","fields":[]}`,
			writer: `{"type":"record","name":"P","fields":[]}`,
			want:   []want{{kind: NameMismatch, location: "/name", path: "/name", message: []string{"`Q`", "`P`"}, hint: []string{"add `P` to its aliases"}}}},
		{name: "record renamed with alias",
			reader: `{"type":"record","name":"Q","aliases":["P"],"fields":[]}`,
			writer: `{"type":"record","name":"P","fields":[]}`},
		{name: "alias must match the writer's full name",
			reader: `{"type":"record","name":"Q","namespace":"b","aliases":["P"],"fields":[]}`,
			writer: `{"type":"record","name":"P","namespace":"a","fields":[]}`,
			want:   []want{{kind: NameMismatch, location: "/name", path: "/name", hint: []string{"`a.P`"}}}},
		{name: "qualified alias",
			reader: `{"type":"record","name":"Q","namespace":"b","aliases":["a.P"],"fields":[]}`,
			writer: `{"type":"record","name":"P","namespace":"a","fields":[]}`},
		{name: "writer alias does not count",
			reader: `{"type":"record","name":"Q","fields":[]}`,
			writer: `{"type":"record","name":"P","aliases":["Q"],"fields":[]}`,
			want:   []want{{kind: NameMismatch, location: "/name", path: "/name"}}},
		{name: "empty namespace inside a namespace is the null namespace",
			reader: `{"type":"record","name":"R","namespace":"n","fields":[{"name":"a","type":{"type":"record","name":"New","aliases":["Old"],"fields":[]}}]}`,
			writer: `{"type":"record","name":"R","namespace":"n","fields":[{"name":"a","type":{"type":"record","name":"Old","namespace":"","fields":[]}}]}`,
			want:   []want{{kind: NameMismatch, location: "/fields/0/type/name", path: "/fields/a/type/name"}}},

		// Fields.
		{name: "field added with default", reader: rec(`{"name":"a","type":"int","default":1}`), writer: rec()},
		{name: "field added with null default", reader: rec(`{"name":"a","type":["null","int"],"default":null}`), writer: rec()},
		{name: "field added without default", reader: rec(`{"name":"x","type":"int"}`, `{"name":"a","type":"string"}`), writer: rec(`{"name":"x","type":"int"}`),
			want: []want{{kind: ReaderFieldMissingDefaultValue, location: "/fields/1", path: "/fields/a",
				message: []string{"`a`", "`R`"}, hint: []string{"add a default to reader field `a`", `"default": ""`}}}},
		{name: "field removed", reader: rec(), writer: rec(`{"name":"a","type":"int"}`)},
		{name: "field renamed with alias", reader: rec(`{"name":"b","aliases":["a"],"type":"long"}`), writer: rec(`{"name":"a","type":"int"}`)},
		{name: "field renamed with alias, type narrowed", reader: rec(`{"name":"b","aliases":["a"],"type":"int"}`), writer: rec(`{"name":"a","type":"long"}`),
			want: []want{{kind: TypeMismatch, location: "/fields/0/type", path: "/fields/b/type", message: []string{"field `b` (writer field `a`)"}}}},
		{name: "field renamed, writer alias only", reader: rec(`{"name":"b","type":"int"}`), writer: rec(`{"name":"a","aliases":["b"],"type":"int"}`),
			want: []want{{kind: ReaderFieldMissingDefaultValue, location: "/fields/0", path: "/fields/b"}}},
		{name: "name and alias match two writer fields",
			reader: rec(`{"name":"a","aliases":["b"],"type":"int"}`),
			writer: rec(`{"name":"a","type":"int"}`, `{"name":"b","type":"int"}`),
			want:   []want{{kind: AmbiguousField, location: "/fields/0", path: "/fields/a", message: []string{"`a`", "`b`"}}}},
		{name: "ambiguous field met in an unchosen union branch",
			reader: `[{"type":"record","name":"A","fields":[{"name":"a","aliases":["b"],"type":"int"}]},{"type":"record","name":"C","aliases":["A"],"fields":[]}]`,
			writer: `{"type":"record","name":"A","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}`,
			want:   []want{{kind: AmbiguousField, location: "/", path: "/", message: []string{"reader union"}}}},
		{name: "enum default is not a field default",
			reader: rec(`{"name":"s","type":{"type":"enum","name":"S","symbols":["U","A"],"default":"U"}}`),
			writer: rec(),
			want: []want{{kind: TypeMismatch, location: "/fields/0/type", path: "/fields/s/type",
				message: []string{"`s`", "no default"}, hint: []string{`"default": "U"`}}}},

		// Enums.
		{name: "enum symbol added", reader: `{"type":"enum","name":"E","symbols":["A","B"]}`, writer: `{"type":"enum","name":"E","symbols":["A"]}`},
		{name: "enum symbols removed",
			reader: `{"type":"enum","name":"E","symbols":["B"]}`,
			writer: `{"type":"enum","name":"E","symbols":["C","A","B"]}`,
			want: []want{{kind: MissingEnumSymbols, location: "/symbols", path: "/symbols",
				message: []string{"`A`, `C`"}, hint: []string{"keep symbols `A`, `C`", "give enum `E` a default symbol"}}}},
		{name: "enum symbol removed, reader default",
			reader: `{"type":"enum","name":"E","symbols":["U","A"],"default":"U"}`,
			writer: `{"type":"enum","name":"E","symbols":["U","A","B"]}`},
		{name: "enum symbol removed, writer default only",
			reader: `{"type":"enum","name":"E","symbols":["U","A"]}`,
			writer: `{"type":"enum","name":"E","symbols":["U","A","B"],"default":"U"}`,
			want:   []want{{kind: MissingEnumSymbols, location: "/symbols", path: "/symbols"}}},

		// Fixed.
		{name: "fixed resized",
			reader: `{"type":"fixed","name":"H","size":8}`, writer: `{"type":"fixed","name":"H","size":16}`,
			want: []want{{kind: FixedSizeMismatch, location: "/size", path: "/size", message: []string{"8", "16"}, hint: []string{"16 bytes"}}}},
		{name: "fixed renamed and resized",
			reader: `{"type":"fixed","name":"G","size":8}`, writer: `{"type":"fixed","name":"H","size":16}`,
			want: []want{{kind: NameMismatch, location: "/name", path: "/name"}, {kind: FixedSizeMismatch, location: "/size", path: "/size"}}},

		// Arrays and maps.
		{name: "array items narrowed", reader: `{"type":"array","items":"int"}`, writer: `{"type":"array","items":"long"}`,
			want: []want{{kind: TypeMismatch, location: "/items", path: "/items"}}},
		{name: "map values widened", reader: `{"type":"map","values":"double"}`, writer: `{"type":"map","values":"float"}`},
		{name: "map values narrowed", reader: `{"type":"map","values":"float"}`, writer: `{"type":"map","values":"double"}`,
			want: []want{{kind: TypeMismatch, location: "/values", path: "/values"}}},
		{name: "array as map", reader: `{"type":"map","values":"int"}`, writer: `{"type":"array","items":"int"}`,
			want: []want{{kind: TypeMismatch, location: "/", path: "/"}}},

		// Unions.
		{name: "writer union, every branch readable", reader: `"double"`, writer: `["int","long","float"]`},
		{name: "writer union, some branches unreadable", reader: `"long"`, writer: `["int","string","null"]`,
			want: []want{
				{kind: TypeMismatch, location: "/1", path: "/string"},
				{kind: TypeMismatch, location: "/2", path: "/null"},
			}},
		{name: "reader union, a branch reads the writer", reader: `["null","long"]`, writer: `"int"`},
		{name: "reader union, no branch reads the writer", reader: `["null","string"]`, writer: `"int"`,
			want: []want{{kind: MissingUnionBranch, location: "/", path: "/", message: []string{"[null, string]", "int"}, hint: []string{"int, long, float or double"}}}},
		{name: "reader union, same-named branch broken", reader: `["null",{"type":"enum","name":"E","symbols":["A"]}]`,
			writer: `{"type":"enum","name":"E","symbols":["A","B"]}`,
			want:   []want{{kind: MissingUnionBranch, location: "/", path: "/", hint: []string{"enum `E` looks meant to match", "`B`"}}}},
		{name: "unions reordered", reader: `["string","null"]`, writer: `["null","string"]`},
		{name: "union branch removed", reader: `["null","string"]`, writer: `["null","string","int"]`,
			want: []want{{kind: MissingUnionBranch, location: "/2", path: "/int", message: []string{"writer union branch 2 (int)"}}}},
		{name: "field made non-nullable", reader: rec(`{"name":"a","type":"int"}`), writer: rec(`{"name":"a","type":["null","int"],"default":null}`),
			want: []want{{kind: TypeMismatch, location: "/fields/0/type/0", path: "/fields/a/type/null", message: []string{"field `a`"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := CheckPair(mustParse(t, tt.reader), mustParse(t, tt.writer))
			checkWants(t, got, tt.want)
		})
	}
}

// TestCheckPairReportsEveryProblem is the reason this package exists next to
// hamba's checker, which stops at the first problem.
func TestCheckPairReportsEveryProblem(t *testing.T) {
	t.Parallel()
	writer := mustParse(t, `{"type":"record","name":"Payment","namespace":"com.acme","fields":[
		{"name":"id","type":"string"},
		{"name":"amount","type":"long"},
		{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","REFUNDED"]}},
		{"name":"hash","type":{"type":"fixed","name":"Hash","size":16}}]}`)
	reader := mustParse(t, `{"type":"record","name":"Payment","namespace":"com.acme","fields":[
		{"name":"id","type":"string"},
		{"name":"amount","type":"int"},
		{"name":"currency","type":"string"},
		{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},
		{"name":"fee","type":["null","double"]},
		{"name":"hash","type":{"type":"fixed","name":"Hash","size":32}}]}`)
	checkWants(t, CheckPair(reader, writer), []want{
		{kind: TypeMismatch, location: "/fields/1/type", path: "/fields/amount/type",
			message: []string{"field `amount`", "int", "long"}, hint: []string{"long, float or double"}},
		{kind: ReaderFieldMissingDefaultValue, location: "/fields/2", path: "/fields/currency",
			message: []string{"`currency`", "`com.acme.Payment`"}, hint: []string{"add a default to reader field `currency`"}},
		{kind: MissingEnumSymbols, location: "/fields/3/type/symbols", path: "/fields/status/type/symbols",
			message: []string{"`REFUNDED`"}, hint: []string{"keep symbol `REFUNDED`", "give enum `com.acme.Status` a default symbol"}},
		{kind: ReaderFieldMissingDefaultValue, location: "/fields/4", path: "/fields/fee",
			hint: []string{`"default": null`}},
		{kind: FixedSizeMismatch, location: "/fields/5/type/size", path: "/fields/hash/type/size"},
	})
}

func TestCheckPairRecursion(t *testing.T) {
	t.Parallel()
	list := func(valueType, extra string) string {
		return `{"type":"record","name":"Node","fields":[{"name":"value","type":"` + valueType + `"},` + extra +
			`{"name":"next","type":["null","Node"],"default":null}]}`
	}
	tests := []struct {
		name, reader, writer string
		want                 []want
	}{
		{name: "same list", reader: list("int", ""), writer: list("int", "")},
		{name: "value promoted", reader: list("long", ""), writer: list("int", "")},
		// Found once at the top, not again (or forever) down the list.
		{name: "value narrowed", reader: list("int", ""), writer: list("long", ""),
			want: []want{{kind: TypeMismatch, location: "/fields/0/type", path: "/fields/value/type"}}},
		{name: "field without default", reader: list("int", `{"name":"tag","type":"string"},`), writer: list("int", ""),
			want: []want{{kind: ReaderFieldMissingDefaultValue, location: "/fields/1", path: "/fields/tag"}}},
		{name: "mutual recursion",
			reader: `{"type":"record","name":"A","fields":[{"name":"b","type":["null",{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]},{"name":"n","type":"int"}]}]}]}`,
			writer: `{"type":"record","name":"A","fields":[{"name":"b","type":["null",{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}]}]}`,
			want:   []want{{kind: MissingUnionBranch, location: "/fields/0/type/1", path: "/fields/b/type/B", hint: []string{"`n`"}}}},
		// Java decides B compatible while A is assumed compatible, remembers
		// that, and reuses it for field g although B reaches A, which is not:
		// Java says compatible, and so must we.
		{name: "remembered verdict reused",
			reader: `{"type":"record","name":"Top","fields":[
				{"name":"f","type":[
					{"type":"record","name":"A","fields":[
						{"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}},
						{"name":"x","type":"int"}]},
					{"type":"record","name":"C","aliases":["A"],"fields":[]}]},
				{"name":"g","type":"B"}]}`,
			writer: `{"type":"record","name":"Top","fields":[
				{"name":"f","type":{"type":"record","name":"A","fields":[
					{"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}}]}},
				{"name":"g","type":"B"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkWants(t, CheckPair(mustParse(t, tt.reader), mustParse(t, tt.writer)), tt.want)
		})
	}
}

// A named type used in two places is reported in both, where Java repeats
// the first location.
func TestCheckPairSharedNamedType(t *testing.T) {
	t.Parallel()
	reader := mustParse(t, `{"type":"record","name":"R","fields":[
		{"name":"home","type":{"type":"record","name":"Addr","fields":[{"name":"zip","type":"int"}]}},
		{"name":"work","type":"Addr"}]}`)
	writer := mustParse(t, `{"type":"record","name":"R","fields":[
		{"name":"home","type":{"type":"record","name":"Addr","fields":[{"name":"zip","type":"string"}]}},
		{"name":"work","type":"Addr"}]}`)
	checkWants(t, CheckPair(reader, writer), []want{
		{kind: TypeMismatch, location: "/fields/0/type/fields/0/type", path: "/fields/home/type/fields/zip/type"},
		{kind: TypeMismatch, location: "/fields/1/type/fields/0/type", path: "/fields/work/type/fields/zip/type"},
	})
}

// hamba's SchemaCompatibility keys its cache by canonical-form fingerprint,
// which leaves out defaults and aliases: one instance reused after checking
// a schema without a default keeps failing the same schema with one. Each
// CheckPair starts afresh.
func TestCheckPairKeepsNoState(t *testing.T) {
	t.Parallel()
	old := mustParse(t, rec(`{"name":"a","type":"int"}`))
	noDefault := mustParse(t, rec(`{"name":"a","type":"int"}`, `{"name":"b","type":"string"}`))
	withDefault := mustParse(t, rec(`{"name":"a","type":"int"}`, `{"name":"b","type":"string","default":""}`))
	if got := CheckPair(noDefault, old); len(got) != 1 {
		t.Fatalf("CheckPair(noDefault, old) = %v, want one problem", got)
	}
	if got := CheckPair(withDefault, old); len(got) != 0 {
		t.Errorf("CheckPair(withDefault, old) = %v, want none", got)
	}
}

func TestLocationEscaping(t *testing.T) {
	t.Parallel()
	if got := escapePointer("a/b~c"); got != "a~1b~0c" {
		t.Errorf("escapePointer = %q, want %q", got, "a~1b~0c")
	}
}
