package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"
)

// Decoding budget for recursive writer schemas. A schema whose record
// refers to itself (a linked list, a tree) lets a body of a few megabytes
// nest a million levels deep: hamba/avro decodes it recursively, which took
// 1.45 GB for a 1 MB body and overflowed the goroutine stack at 2.5 MB — a
// fatal error no recover catches. Before such a body is decoded, it is
// walked (skipped, allocating nothing) with a bounded depth and a bounded
// number of values. Non-recursive schemas nest only as deep as the schema
// itself and are not walked. hamba/avro has no depth limit of its own,
// hence this walker.
const (
	// MaxDepth bounds how deeply records, arrays, maps and unions nest in
	// a value of a recursive schema.
	MaxDepth = 128
	// MaxValues bounds how many records, array items and map entries
	// such a value holds.
	MaxValues = 100_000
)

// ErrTooComplex: a value of a recursive schema nests deeper than MaxDepth
// or holds more than MaxValues values.
var ErrTooComplex = errors.New("value exceeds the decoding budget")

// recursive reports whether s refers to itself (hamba/avro marks the
// reference with a RefSchema).
func recursive(s avro.Schema) bool {
	seen := map[avro.Schema]bool{}
	var walk func(avro.Schema) bool
	walk = func(s avro.Schema) bool {
		switch t := s.(type) {
		case *avro.RefSchema:
			return true
		case *avro.RecordSchema:
			if seen[t] {
				return false
			}
			seen[t] = true
			for _, f := range t.Fields() {
				if walk(f.Type()) {
					return true
				}
			}
		case *avro.ArraySchema:
			return walk(t.Items())
		case *avro.MapSchema:
			return walk(t.Values())
		case *avro.UnionSchema:
			for _, u := range t.Types() {
				if walk(u) {
					return true
				}
			}
		}
		return false
	}
	return walk(s)
}

// checkBudget walks body as a value of writer within the budget.
func checkBudget(writer avro.Schema, body []byte) error {
	w := &walker{b: body, values: MaxValues}
	return w.skip(writer, 0)
}

type walker struct {
	b      []byte
	values int
}

var errShort = errors.New("body ends inside a value")

func (w *walker) long() (int64, error) {
	u, n := binary.Uvarint(w.b)
	if n <= 0 {
		return 0, errShort
	}
	w.b = w.b[n:]
	return int64(u>>1) ^ -int64(u&1), nil // zigzag
}

func (w *walker) advance(n int64) error {
	if n < 0 || n > int64(len(w.b)) {
		return errShort
	}
	w.b = w.b[n:]
	return nil
}

func (w *walker) count() error {
	if w.values--; w.values < 0 {
		return fmt.Errorf("%w: more than %d values", ErrTooComplex, MaxValues)
	}
	return nil
}

func (w *walker) skip(s avro.Schema, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: nested more than %d levels deep", ErrTooComplex, MaxDepth)
	}
	switch t := s.(type) {
	case *avro.RefSchema:
		return w.skip(t.Schema(), depth)
	case *avro.RecordSchema:
		if err := w.count(); err != nil {
			return err
		}
		for _, f := range t.Fields() {
			if err := w.skip(f.Type(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case *avro.UnionSchema:
		i, err := w.long()
		if err != nil {
			return err
		}
		types := t.Types()
		if i < 0 || i >= int64(len(types)) {
			return fmt.Errorf("union branch %d of %d", i, len(types))
		}
		return w.skip(types[i], depth+1)
	case *avro.ArraySchema:
		return w.blocks(func() error { return w.skip(t.Items(), depth+1) })
	case *avro.MapSchema:
		return w.blocks(func() error {
			n, err := w.long()
			if err == nil {
				err = w.advance(n)
			}
			if err == nil {
				err = w.skip(t.Values(), depth+1)
			}
			return err
		})
	case *avro.NullSchema:
		return nil
	case *avro.EnumSchema:
		_, err := w.long()
		return err
	case *avro.FixedSchema:
		return w.advance(int64(t.Size()))
	case *avro.PrimitiveSchema:
		switch t.Type() {
		case avro.Null:
			return nil
		case avro.Boolean:
			return w.advance(1)
		case avro.Int, avro.Long:
			_, err := w.long()
			return err
		case avro.Float:
			return w.advance(4)
		case avro.Double:
			return w.advance(8)
		case avro.Bytes, avro.String:
			n, err := w.long()
			if err != nil {
				return err
			}
			return w.advance(n)
		}
	}
	return fmt.Errorf("schema type %s not walkable", s.Type())
}

// blocks walks an array's or map's blocks: a count, negative when a byte
// size follows, items, until a zero count.
func (w *walker) blocks(item func() error) error {
	for {
		n, err := w.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			n = -n
			if _, err := w.long(); err != nil {
				return err
			}
		}
		for ; n > 0; n-- {
			if err := w.count(); err != nil {
				return err
			}
			if err := item(); err != nil {
				return err
			}
		}
	}
}
