package compat

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// primitiveNames are the type names that are never references.
var primitiveNames = map[string]bool{"null": true, "boolean": true, "int": true, "long": true, "float": true, "double": true, "bytes": true, "string": true}

// Names reports the full names of the named types (records, enums, fixed)
// a schema text defines, and of those it uses without defining them: the
// names another schema must define, its references in a registry's terms.
// Both are sorted. hamba/avro resolves names only while parsing and fails
// on the first unknown one, so the walk over the JSON is done here.
func Names(text string) (defines, uses []string, err error) {
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return nil, nil, fmt.Errorf("%w: not valid JSON: %w", ErrInvalidSchema, err)
	}
	w := nameWalk{defined: map[string]bool{}, used: map[string]bool{}}
	w.walk(v, "", 0)
	for n := range w.defined {
		defines = append(defines, n)
	}
	for n := range w.used {
		if !w.defined[n] {
			uses = append(uses, n)
		}
	}
	slices.Sort(defines)
	slices.Sort(uses)
	return defines, uses, nil
}

type nameWalk struct{ defined, used map[string]bool }

// maxNameDepth bounds the walk's recursion; hamba refuses deeper schemas
// anyway.
const maxNameDepth = 256

// fullName qualifies name in namespace ns, as the Avro specification does:
// a name with a dot is already full.
func fullName(name, ns string) string {
	if strings.Contains(name, ".") || ns == "" {
		return strings.TrimPrefix(name, ".")
	}
	return ns + "." + name
}

func (w nameWalk) walk(v any, ns string, depth int) {
	if depth > maxNameDepth {
		return
	}
	switch t := v.(type) {
	case string:
		if !primitiveNames[t] {
			w.used[fullName(t, ns)] = true
		}
	case []any: // a union
		for _, b := range t {
			w.walk(b, ns, depth+1)
		}
	case map[string]any:
		switch typ := t["type"].(type) {
		case string:
			switch typ {
			case "record", "error", "enum", "fixed":
				name, _ := t["name"].(string)
				own := ns
				if i := strings.LastIndexByte(name, '.'); i >= 0 {
					own = strings.TrimPrefix(name[:i], ".")
				} else if space, ok := t["namespace"].(string); ok {
					own = space
				}
				if name != "" {
					w.defined[fullName(name, own)] = true
				}
				fields, _ := t["fields"].([]any)
				for _, f := range fields {
					if fm, ok := f.(map[string]any); ok {
						w.walk(fm["type"], own, depth+1)
					}
				}
			case "array":
				w.walk(t["items"], ns, depth+1)
			case "map":
				w.walk(t["values"], ns, depth+1)
			default:
				if !primitiveNames[typ] {
					w.used[fullName(typ, ns)] = true
				}
			}
		case []any, map[string]any:
			w.walk(typ, ns, depth+1)
		}
	}
}

// ParseWith parses text in a fresh name cache into which deps were parsed
// first, in order: the schemas that define the named types text uses
// (references), each after the ones it uses itself. Parse's alignments with
// Avro Java apply to every text.
func ParseWith(text string, deps ...string) (avro.Schema, error) {
	if len(deps) == 0 {
		return Parse(text)
	}
	cache := &avro.SchemaCache{}
	for i, d := range deps {
		fixed, err := javaNamespaces(d)
		if err != nil {
			return nil, fmt.Errorf("reference %d: %w", i+1, err)
		}
		if _, err := avro.ParseWithCache(fixed, "", cache); err != nil {
			return nil, fmt.Errorf("%w: reference %d: %w", ErrInvalidSchema, i+1, err)
		}
	}
	fixed, err := javaNamespaces(text)
	if err != nil {
		return nil, err
	}
	s, err := avro.ParseWithCache(fixed, "", cache)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
	}
	return s, nil
}
