package compat

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// This file words the findings. The wording is for a person deciding how to
// change a schema: each message names both sides, each hint names one change
// that removes the problem.

func nameMismatch(r, w avro.NamedSchema) finding {
	kind := string(r.Type())
	return finding{
		kind: NameMismatch,
		at:   []step{{"name", "name"}},
		message: fmt.Sprintf("reader %s %s cannot read writer %s %s: the names differ and the reader has no alias %s",
			kind, quote(r.FullName()), kind, quote(w.FullName()), quote(w.FullName())),
		hint: fmt.Sprintf("rename reader %s %s back to %s, or add %s to its aliases",
			kind, quote(r.FullName()), quote(w.Name()), quote(w.FullName())),
	}
}

func fixedSizeMismatch(r, w *avro.FixedSchema) finding {
	return finding{
		kind: FixedSizeMismatch,
		at:   []step{{"size", "size"}},
		message: fmt.Sprintf("reader fixed %s is %d bytes but writer fixed %s is %d bytes",
			quote(r.FullName()), r.Size(), quote(w.FullName()), w.Size()),
		hint: fmt.Sprintf("keep fixed %s at %d bytes; for another size, add a new fixed type in a new field",
			quote(r.FullName()), w.Size()),
	}
}

func missingEnumSymbols(r *avro.EnumSchema, missing []string) finding {
	syms := quoteAll(missing)
	noun := "symbol"
	if len(missing) > 1 {
		noun = "symbols"
	}
	return finding{
		kind:    MissingEnumSymbols,
		at:      []step{{"symbols", "symbols"}},
		message: fmt.Sprintf("reader enum %s lacks writer %s %s", quote(r.FullName()), noun, syms),
		hint: fmt.Sprintf("keep %s %s in enum %s, or give enum %s a default symbol to read unknown symbols as",
			noun, syms, quote(r.FullName()), quote(r.FullName())),
	}
}

func missingDefault(rf *avro.Field, w *avro.RecordSchema) finding {
	return finding{
		kind:  ReaderFieldMissingDefaultValue,
		named: true,
		message: fmt.Sprintf("reader field %s (%s) is not in writer record %s and has no default",
			quote(rf.Name()), describe(rf.Type()), quote(w.FullName())),
		hint: fmt.Sprintf("add a default to reader field %s%s, or an alias naming the writer field it replaces",
			quote(rf.Name()), suggestDefault(rf.Type())),
	}
}

func enumFieldWithoutDefault(rf *avro.Field, e *avro.EnumSchema, w *avro.RecordSchema) finding {
	return finding{
		kind:  TypeMismatch,
		named: true,
		message: fmt.Sprintf("reader field %s is not in writer record %s and has no default; "+
			"the default symbol of its enum %s does not count as one (it only stands in for unknown symbols)",
			quote(rf.Name()), quote(w.FullName()), quote(e.FullName())),
		hint: fmt.Sprintf(`add a default to reader field %s (e.g. "default": %q)`, quote(rf.Name()), e.Default()),
	}
}

func ambiguousField(r *avro.RecordSchema, rf *avro.Field, matches []*avro.Field) finding {
	var names []string
	for _, m := range matches {
		if !slices.Contains(names, m.Name()) {
			names = append(names, m.Name())
		}
	}
	what := fmt.Sprintf("%d writer fields (%s) by its name and aliases", len(names), quoteAll(names))
	if len(names) == 1 {
		what = fmt.Sprintf("writer field %s twice, by its name and by an alias equal to it", quote(names[0]))
	}
	return finding{
		kind:    AmbiguousField,
		named:   true,
		message: fmt.Sprintf("reader field %s of record %s matches %s; Avro Java refuses to check such a pair", quote(rf.Name()), quote(r.FullName()), what),
		hint:    fmt.Sprintf("remove from reader field %s every alias that names another writer field or repeats its own name", quote(rf.Name())),
	}
}

func typeMismatch(r, w avro.Schema) finding {
	return finding{
		kind:    TypeMismatch,
		message: fmt.Sprintf("reader type %s cannot read writer type %s", describe(r), describe(w)),
		hint:    fmt.Sprintf("give the reader a type that can read %s: %s (or a union with one as a branch)", describe(w), readersOf(w)),
	}
}

// fieldContext prefixes a message about a field's own type.
func fieldContext(rf, wf *avro.Field) string {
	if rf.Name() == wf.Name() {
		return fmt.Sprintf("field %s: ", quote(rf.Name()))
	}
	return fmt.Sprintf("field %s (writer field %s): ", quote(rf.Name()), quote(wf.Name()))
}

// missingBranch explains why no branch of reader union r reads writer type w
// (writer union branch i when i >= 0). It only recalls verdicts already
// reached, so explaining cannot change what the check finds.
func (c *checker) missingBranch(r *avro.UnionSchema, w avro.Schema, i int) finding {
	what := "writer type " + describe(w)
	if i >= 0 {
		what = fmt.Sprintf("writer union branch %d (%s)", i, describe(w))
	}
	hint := fmt.Sprintf("add to the reader union a branch that can read %s (%s)", describe(w), readersOf(w))
	// A branch of the same type (for named types, the same kind) is what the
	// author most likely meant to match; say why it does not.
	for _, rb := range r.Types() {
		rb = deref(rb)
		if rb.Type() != deref(w).Type() {
			continue
		}
		if fs, ok := c.recall(rb, w); ok && len(fs) > 0 {
			hint = fmt.Sprintf("reader branch %s looks meant to match, but: %s; %s", describe(rb), fs[0].message, fs[0].hint)
			if len(fs) > 1 {
				hint += fmt.Sprintf(", and %d more problem(s)", len(fs)-1)
			}
		}
		break
	}
	return finding{
		kind:    MissingUnionBranch,
		message: fmt.Sprintf("no branch of reader %s can read %s", describe(r), what),
		hint:    hint,
	}
}

// readersOf lists the reader types that can read a writer type.
func readersOf(w avro.Schema) string {
	w = deref(w)
	switch w.Type() {
	case avro.Int:
		return "int, long, float or double"
	case avro.Long:
		return "long, float or double"
	case avro.Float:
		return "float or double"
	case avro.String, avro.Bytes:
		return "string or bytes"
	case avro.Record, avro.Enum, avro.Fixed:
		n := w.(avro.NamedSchema)
		return fmt.Sprintf("a compatible %s named %s (or with alias %s)", w.Type(), quote(n.Name()), quote(n.FullName()))
	case avro.Array:
		return "an array whose items can read " + describe(w.(*avro.ArraySchema).Items())
	case avro.Map:
		return "a map whose values can read " + describe(w.(*avro.MapSchema).Values())
	}
	return string(w.Type())
}

// describe names a schema for a message: "long (timestamp-millis)", "record
// `a.B`", "array of string", "union [null, string]".
func describe(s avro.Schema) string {
	s = deref(s)
	switch t := s.(type) {
	case *avro.RecordSchema:
		return "record " + quote(t.FullName())
	case *avro.EnumSchema:
		return "enum " + quote(t.FullName())
	case *avro.FixedSchema:
		return fmt.Sprintf("fixed %s (%d bytes)", quote(t.FullName()), t.Size())
	case *avro.ArraySchema:
		return "array of " + describe(t.Items())
	case *avro.MapSchema:
		return "map of " + describe(t.Values())
	case *avro.UnionSchema:
		names := make([]string, len(t.Types()))
		for i, b := range t.Types() {
			names[i] = shortName(b)
		}
		return "union [" + strings.Join(names, ", ") + "]"
	case *avro.PrimitiveSchema:
		if l := t.Logical(); l != nil {
			return fmt.Sprintf("%s (%s)", t.Type(), l.Type())
		}
	}
	return string(s.Type())
}

// shortName is a schema's name in a union listing or a human path: the full
// name of a named type, else the type.
func shortName(s avro.Schema) string {
	s = deref(s)
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

// suggestDefault proposes a default for a field of type s, as ` (e.g.
// "default": x)`, or "" where no short one exists.
func suggestDefault(s avro.Schema) string {
	var v string
	switch t := deref(s).(type) {
	case *avro.UnionSchema:
		// A union field's default must match its first branch.
		if len(t.Types()) == 0 {
			return ""
		}
		return suggestDefault(t.Types()[0])
	case *avro.EnumSchema:
		switch {
		case t.HasDefault():
			v = fmt.Sprintf("%q", t.Default())
		case len(t.Symbols()) > 0:
			v = fmt.Sprintf("%q", t.Symbols()[0])
		default:
			return ""
		}
	case *avro.ArraySchema:
		v = "[]"
	case *avro.MapSchema:
		v = "{}"
	case *avro.RecordSchema, *avro.FixedSchema:
		return ""
	default:
		switch t.Type() {
		case avro.Null:
			v = "null"
		case avro.Boolean:
			v = "false"
		case avro.Int, avro.Long, avro.Float, avro.Double:
			v = "0"
		case avro.String, avro.Bytes:
			v = `""`
		default:
			return ""
		}
	}
	return fmt.Sprintf(` (e.g. "default": %s)`, v)
}

func quote(s string) string { return "`" + s + "`" }

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}
