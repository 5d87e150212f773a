package producer

import (
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// validate walks the encoded body: every kind of value before and around a
// uuid string is skipped exactly (a misread byte would shift the walk and
// pass a bad UUID or fail a good one), and a bad UUID is named by its path.
func TestValidateWalksEveryKind(t *testing.T) {
	s := avro.MustParse(`{"type": "record", "name": "T", "fields": [
		{"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
		{"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "raw", "type": "bytes"},
		{"name": "s", "type": "string"}, {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
		{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
		{"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
		{"name": "opt", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
		{"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "L", "fields": [
			{"name": "n", "type": "long"}, {"name": "sku", "type": {"type": "string", "logicalType": "uuid"}}]}}},
		{"name": "refs", "type": {"type": "map", "values": {"type": "string", "logicalType": "uuid"}}},
		{"name": "again", "type": ["null", "L"]},
		{"name": "tail", "type": {"type": "string", "logicalType": "uuid"}}
	]}`)
	const good = "6f1c3b7e-2a44-4e55-9d0b-6a4c5b1e2f30"
	base := func() map[string]any {
		return map[string]any{
			"b": true, "i": 7, "l": int64(-1 << 40), "f": float32(1.5), "d": 2.25, "raw": []byte{0, 1, 2, 255},
			"s": "ünïcode", "fx": [3]byte{1, 2, 3}, "e": "B", "id": good, "opt": good,
			"lines": []any{map[string]any{"n": int64(1), "sku": good}, map[string]any{"n": int64(300), "sku": good}},
			"refs":  map[string]any{"x": good, "y": good},
			"again": map[string]any{"L": map[string]any{"n": int64(5), "sku": good}},
			"tail":  good,
		}
	}
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string // "" valid, else the path in the error
	}{
		{"valid", func(map[string]any) {}, ""},
		{"valid with nulls and empties", func(m map[string]any) {
			m["opt"], m["again"], m["lines"], m["refs"] = nil, nil, []any{}, map[string]any{}
		}, ""},
		{"top level", func(m map[string]any) { m["id"] = "nope" }, "/id"},
		{"union branch", func(m map[string]any) { m["opt"] = "nope" }, "/opt"},
		{"array item", func(m map[string]any) {
			m["lines"] = []any{map[string]any{"n": int64(1), "sku": good}, map[string]any{"n": int64(2), "sku": "nope"}}
		}, "/lines/1/sku"},
		{"map value", func(m map[string]any) { m["refs"] = map[string]any{"x": good, "y": "nope"} }, "/refs/y"},
		{"union record", func(m map[string]any) { m["again"] = map[string]any{"L": map[string]any{"n": int64(5), "sku": "nope"}} }, "/again/sku"},
		{"after everything", func(m map[string]any) { m["tail"] = "nope" }, "/tail"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base()
			c.edit(m)
			body, err := avro.Marshal(s, m)
			if err != nil {
				t.Fatal(err)
			}
			err = validate(s, body)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid event refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), "field "+c.want+": \"nope\" is not a UUID")):
				t.Fatalf("got %v, want the bad UUID at %s", err, c.want)
			}
		})
	}
	// A body cut short is an error, not a pass.
	body, _ := avro.Marshal(s, base())
	if err := validate(s, body[:len(body)-5]); err == nil {
		t.Fatal("a truncated body passed")
	}
}
