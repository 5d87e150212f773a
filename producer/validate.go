package producer

import (
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
)

// validate checks what Avro encoding does not: strings of logical type uuid
// must be UUIDs. hamba/avro encodes any string there, and a consumer keying
// its dedupe table or joins on a malformed id would fail far from the cause.
// body is the event's Avro encoding. It is read back by walking the schema
// over the binary with hamba/avro's Reader, skipping every value but the
// uuid strings: a generic decode (maps, interfaces) took more of a
// writer's CPU than the INSERT's encoding (bench e2e profile).
// The producer calls it only for schemas hasUUID found one in (once, at
// New).
func validate(s avro.Schema, body []byte) error {
	r := avro.NewReader(nil, 0).Reset(body)
	if err := check(r, s); err != nil {
		return err
	}
	return r.Error
}

// notUUID is a uuid field's bad value; path is built as the error returns
// through the schema (innermost segment first), so a valid event pays for
// no path at all.
type notUUID struct {
	path []string
	val  string
}

func (e *notUUID) Error() string {
	at := ""
	for i := len(e.path) - 1; i >= 0; i-- {
		at += "/" + e.path[i]
	}
	return fmt.Sprintf("field %s: %q is not a UUID", orRoot(at), e.val)
}

// in adds the segment seg to err's path when err is a notUUID.
func in(err error, seg func() string) error {
	if e, ok := err.(*notUUID); ok {
		e.path = append(e.path, seg())
	}
	return err
}

// check reads one value of schema s from r, checking its uuid strings.
// Reading stops at r's first error (a body that does not match s).
func check(r *avro.Reader, s avro.Schema) error {
	switch st := s.(type) {
	case *avro.RefSchema:
		return check(r, st.Schema())
	case *avro.PrimitiveSchema:
		switch st.Type() {
		case avro.Boolean:
			r.SkipBool()
		case avro.Int:
			r.SkipInt()
		case avro.Long:
			r.SkipLong()
		case avro.Float:
			r.SkipFloat()
		case avro.Double:
			r.SkipDouble()
		case avro.Bytes:
			r.SkipBytes()
		case avro.String:
			if st.Logical() == nil || st.Logical().Type() != avro.UUID {
				r.SkipString()
				break
			}
			if str := r.ReadString(); r.Error == nil {
				if _, err := uuid.Parse(str); err != nil {
					return &notUUID{val: str}
				}
			}
		}
	case *avro.FixedSchema:
		r.SkipNBytes(st.Size())
	case *avro.EnumSchema:
		r.SkipInt()
	case *avro.RecordSchema:
		for _, f := range st.Fields() {
			if err := check(r, f.Type()); err != nil {
				return in(err, f.Name)
			}
			if r.Error != nil {
				return nil
			}
		}
	case *avro.ArraySchema:
		i := 0
		for r.Error == nil {
			n, _ := r.ReadBlockHeader()
			if n == 0 {
				break
			}
			for range n {
				if err := check(r, st.Items()); err != nil {
					return in(err, func() string { return strconv.Itoa(i) })
				}
				if r.Error != nil {
					return nil
				}
				i++
			}
		}
	case *avro.MapSchema:
		for r.Error == nil {
			n, _ := r.ReadBlockHeader()
			if n == 0 {
				break
			}
			for range n {
				k := r.ReadString()
				if err := check(r, st.Values()); err != nil {
					return in(err, func() string { return k })
				}
				if r.Error != nil {
					return nil
				}
			}
		}
	case *avro.UnionSchema:
		i := r.ReadLong()
		if r.Error != nil {
			return nil
		}
		types := st.Types()
		if i < 0 || i >= int64(len(types)) {
			return fmt.Errorf("union branch %d of %d", i, len(types))
		}
		return check(r, types[i])
	}
	return nil
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
