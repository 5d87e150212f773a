package compat

import (
	"errors"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// Two versions of one named type must not share a cache: with hamba's
// default cache the second version's reference "Addr" would resolve to the
// first version's definition.
func TestParseUsesFreshCache(t *testing.T) {
	t.Parallel()
	v1 := mustParse(t, `{"type":"record","name":"R","fields":[
		{"name":"a","type":{"type":"record","name":"Addr","fields":[{"name":"zip","type":"int"}]}}]}`)
	v2 := mustParse(t, `{"type":"record","name":"R","fields":[
		{"name":"a","type":{"type":"record","name":"Addr","fields":[{"name":"zip","type":"string"}]}}]}`)
	if got := CheckPair(v2, v1); len(got) != 1 || got[0].Kind != TypeMismatch {
		t.Errorf("CheckPair(v2, v1) = %v, want one type mismatch", got)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		`int`, // not JSON; hamba alone would read it as the type name
		`"int" "long"`,
		`{"type":"record","name":"R"}`,
		`{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}`,
		``,
	} {
		if _, err := Parse(text); !errors.Is(err, ErrInvalidSchema) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalidSchema", text, err)
		}
	}
}

func TestParseEmptyNamespace(t *testing.T) {
	t.Parallel()
	s := mustParse(t, `{"type":"record","name":"R","namespace":"n","fields":[
		{"name":"a","type":{"type":"record","name":"Old","namespace":"","fields":[
			{"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}}]}},
		{"name":"b","type":{"type":"array","items":{"type":"fixed","name":"F","namespace":"","size":2}}},
		{"name":"c","type":{"type":"record","name":"Kept","fields":[]}}]}`)
	r := s.(*avro.RecordSchema)
	names := map[string]string{}
	for _, f := range r.Fields() {
		if n, ok := deref(f.Type()).(avro.NamedSchema); ok {
			names[f.Name()] = n.FullName()
		}
		if a, ok := f.Type().(*avro.ArraySchema); ok {
			names[f.Name()] = deref(a.Items()).(avro.NamedSchema).FullName()
		}
	}
	old := deref(r.Fields()[0].Type()).(*avro.RecordSchema)
	names["e"] = deref(old.Fields()[0].Type()).(avro.NamedSchema).FullName()
	for field, want := range map[string]string{"a": "Old", "b": "F", "c": "n.Kept", "e": "E"} {
		if names[field] != want {
			t.Errorf("field %s type = %q, want %q", field, names[field], want)
		}
	}
	// The rewrite must keep numbers as written (hamba's own reading of a
	// default is its business).
	text, err := javaNamespaces(`{"type":"record","name":"R","namespace":"n","fields":[
		{"name":"a","type":{"type":"fixed","name":"F","namespace":"","size":2}},
		{"name":"d","type":"long","default":9007199254740993}]}`)
	if err != nil || !strings.Contains(text, "9007199254740993") || !strings.Contains(text, `".F"`) {
		t.Errorf("javaNamespaces = %s, %v; want .F and the exact default", text, err)
	}
}
