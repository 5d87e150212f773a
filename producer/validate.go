package producer

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
)

// validate checks what Avro encoding does not: strings of logical type uuid
// must be UUIDs. hamba/avro encodes any string there, and a consumer keying
// its dedupe table or joins on a malformed id would fail far from the cause.
// body is the event's Avro encoding, read back generically.
func validate(s avro.Schema, body []byte) error {
	if !hasUUID(s, map[string]bool{}) {
		return nil
	}
	b := body
	var generic any
	if err := avro.Unmarshal(s, b, &generic); err != nil {
		return err
	}
	return walk(s, generic, "")
}

func walk(s avro.Schema, v any, at string) error {
	switch st := s.(type) {
	case *avro.RefSchema:
		return walk(st.Schema(), v, at)
	case *avro.PrimitiveSchema:
		if st.Type() == avro.String && st.Logical() != nil && st.Logical().Type() == avro.UUID {
			str, _ := v.(string)
			if _, err := uuid.Parse(str); err != nil {
				return fmt.Errorf("field %s: %q is not a UUID", orRoot(at), str)
			}
		}
	case *avro.RecordSchema:
		m, _ := v.(map[string]any)
		for _, f := range st.Fields() {
			if err := walk(f.Type(), m[f.Name()], at+"/"+f.Name()); err != nil {
				return err
			}
		}
	case *avro.ArraySchema:
		items, _ := v.([]any)
		for i, it := range items {
			if err := walk(st.Items(), it, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return err
			}
		}
	case *avro.MapSchema:
		m, _ := v.(map[string]any)
		for k, it := range m {
			if err := walk(st.Values(), it, at+"/"+k); err != nil {
				return err
			}
		}
	case *avro.UnionSchema:
		if v == nil {
			return nil
		}
		// Generic decoding of a union yields the branch value, wrapped in
		// a map keyed by branch name for named or multi-branch unions.
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, inner := range m {
				for _, b := range st.Types() {
					if branchName(b) == name {
						return walk(b, inner, at)
					}
				}
			}
		}
		for _, b := range st.Types() {
			if b.Type() != avro.Null {
				if err := walk(b, v, at); err == nil {
					return nil
				} else if len(st.Types()) == 2 {
					return err
				}
			}
		}
	}
	return nil
}

func branchName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		return string(s.Type()) + "." + string(l.Logical().Type())
	}
	return string(s.Type())
}

func orRoot(at string) string {
	if at == "" {
		return "/"
	}
	return at
}

// hasUUID reports whether s contains a uuid logical type anywhere; most
// schemas without one skip the read-back entirely.
func hasUUID(s avro.Schema, seen map[string]bool) bool {
	switch st := s.(type) {
	case *avro.RefSchema:
		return hasUUID(st.Schema(), seen)
	case *avro.PrimitiveSchema:
		return st.Type() == avro.String && st.Logical() != nil && st.Logical().Type() == avro.UUID
	case *avro.RecordSchema:
		if seen[st.FullName()] {
			return false
		}
		seen[st.FullName()] = true
		for _, f := range st.Fields() {
			if hasUUID(f.Type(), seen) {
				return true
			}
		}
	case *avro.ArraySchema:
		return hasUUID(st.Items(), seen)
	case *avro.MapSchema:
		return hasUUID(st.Values(), seen)
	case *avro.UnionSchema:
		for _, b := range st.Types() {
			if hasUUID(b, seen) {
				return true
			}
		}
	}
	return false
}
