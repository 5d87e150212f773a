package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
)

// Parse parses one standalone Avro schema.
//
// Each call gets a fresh name cache. hamba's avro.Parse shares a process-wide
// cache, in which the second version of a schema would find the first
// version's named types already defined and resolve its references to them:
// the two versions being compared would silently share parts.
//
// Two of hamba's readings are brought in line with Avro Java's first, since
// they would otherwise change verdicts:
//
//   - Text that is not JSON is rejected. hamba would take it as a bare type
//     name, so `int` without quotes would parse.
//   - A named type declared with "namespace": "" inside a namespaced schema is
//     in the null namespace, as in Java. hamba reads the empty namespace as
//     "inherit the enclosing one", which changes the type's full name and so
//     which reader aliases match it.
//
// Other differences remain, each making one side reject what the other
// accepts (the differential test lists them). Java accepts, and hamba
// rejects: a union field default matching a branch other than the first, an
// enum field default that is not a symbol, a bytes default with characters
// above U+00FF, Unicode names, an enum without symbols, an alias with a
// leading dot. hamba accepts, and Java rejects: a fractional or out-of-range
// int default, a type named after a primitive, a reference to a named type
// by one of its aliases.
func Parse(text string) (avro.Schema, error) {
	fixed, err := javaNamespaces(text)
	if err != nil {
		return nil, err
	}
	s, err := avro.ParseWithCache(fixed, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
	}
	return s, nil
}

// javaNamespaces returns the schema text with every named type declared with
// an explicit empty namespace inside a namespaced context renamed ".Name",
// which hamba, like Java, reads as Name in the null namespace. Text needing no
// change is returned as it is.
func javaNamespaces(text string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber() // re-encode numbers (defaults) exactly as written
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("%w: not valid JSON: %w", ErrInvalidSchema, err)
	}
	if dec.More() {
		return "", fmt.Errorf("%w: not valid JSON: more than one value", ErrInvalidSchema)
	}
	if !nullNamespaces(v, "") {
		return text, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("error re-encoding schema: %w", err)
	}
	return buf.String(), nil
}

// nullNamespaces applies javaNamespaces' renaming to the decoded schema v
// declared in namespace ns, reporting whether it changed anything.
func nullNamespaces(v any, ns string) bool {
	switch t := v.(type) {
	case []any: // a union
		changed := false
		for _, b := range t {
			changed = nullNamespaces(b, ns) || changed
		}
		return changed
	case map[string]any:
		changed := false
		switch typ := t["type"].(type) {
		case string:
			switch typ {
			case "record", "error", "enum", "fixed":
				name, _ := t["name"].(string)
				own := ns
				if i := strings.LastIndexByte(name, '.'); i >= 0 {
					own = name[:i]
				} else if space, ok := t["namespace"].(string); ok {
					own = space
					if space == "" && ns != "" && name != "" {
						t["name"] = "." + name
						delete(t, "namespace")
						changed = true
					}
				}
				fields, _ := t["fields"].([]any)
				for _, f := range fields {
					if fm, ok := f.(map[string]any); ok {
						changed = nullNamespaces(fm["type"], own) || changed
					}
				}
			case "array":
				changed = nullNamespaces(t["items"], ns)
			case "map":
				changed = nullNamespaces(t["values"], ns)
			}
		case []any, map[string]any:
			// {"type": [...]} or {"type": {...}}: hamba (not the spec)
			// accepts a schema nested under "type".
			changed = nullNamespaces(typ, ns)
		}
		return changed
	}
	return false
}
