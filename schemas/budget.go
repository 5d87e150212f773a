package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hamba/avro/v2"
)

// Budget bounds what decoding one Avro body may cost, whatever its writer
// schema. hamba/avro caps one string's length and one array's element
// count, nothing more: arrays nested in arrays, maps of arrays, wide
// records and recursive records multiply. A 167-byte value of
// array<array<null>> allocated 768 MB; a body of a recursive schema nested a
// million levels took 1.45 GB or overflowed the goroutine stack (a fatal
// error no recover catches). hamba/avro has no depth or size limit of its
// own, so before a body is decoded it is walked, skipping and allocating
// nothing, within a Budget; a Serde does that before every decode.
//
// A value is anything the decoder produces: a record, each of its fields, an
// array and each of its items, a map and each key and value, a union and
// its branch, each primitive. Items are counted, not bytes: a null or an
// empty record takes no bytes, so a block of a million of them is a few
// bytes long. The number of values bounds what the decoder allocates: a
// few hundred bytes per value at worst (a generic union branch is a map).
//
// Zero fields take the defaults (DefaultMaxDepth, DefaultMaxValues,
// DefaultMaxValuesPerByte).
type Budget struct {
	// MaxDepth bounds how deeply records, arrays, maps and unions nest,
	// recursion included. Default 128.
	MaxDepth int
	// MaxValues bounds how many values one body holds. Default 100,000:
	// tens of MB decoded at worst; an event of 10,000 order lines of 8
	// fields fits.
	MaxValues int
	// MaxValuesPerByte bounds the values relative to the body's length
	// (plus 32), so that a batch of records, which the consumer decodes
	// before applying it, costs in proportion to its bytes: a fetch of
	// ten-byte records each holding MaxValues nulls would otherwise cost
	// MaxValues values per ten bytes. Every value but null, a record and a
	// zero-sized fixed takes at least one byte; an optional field left
	// null, two values in one byte, is the densest common shape. Default 4.
	MaxValuesPerByte int
	// MaxReferences bounds the schemas a writer schema's references pull
	// in, transitively (each fetched once per Serde, then cached), and
	// their nesting to MaxDepth. Default 100.
	MaxReferences int
}

// The default Budget.
const (
	DefaultMaxDepth         = 128
	DefaultMaxValues        = 100_000
	DefaultMaxValuesPerByte = 4
	DefaultMaxReferences    = 100
)

// budgetFloor is the number of values any body may hold, however short
// (a record of a few null fields takes no bytes at all).
const budgetFloor = 32

func (b Budget) withDefaults() Budget {
	if b.MaxDepth <= 0 {
		b.MaxDepth = DefaultMaxDepth
	}
	if b.MaxValues <= 0 {
		b.MaxValues = DefaultMaxValues
	}
	if b.MaxValuesPerByte <= 0 {
		b.MaxValuesPerByte = DefaultMaxValuesPerByte
	}
	if b.MaxReferences <= 0 {
		b.MaxReferences = DefaultMaxReferences
	}
	return b
}

// ErrTooComplex: a body nests deeper than its Budget's MaxDepth or holds
// more values than its Budget allows. Serde's decoding errors wrap it (and
// ErrBadBody).
var ErrTooComplex = errors.New("value exceeds the decoding budget")

// Check walks body, the Avro encoding of a value of writer, within b. It
// returns nil, an error wrapping ErrTooComplex, or one wrapping ErrBadBody
// (the body ends inside a value, names a union branch the schema lacks,
// has a block whose byte size is wrong or bytes left over). It allocates nothing but its error, so it can run before
// every decode.
func (b Budget) Check(writer avro.Schema, body []byte) error {
	b = b.withDefaults()
	limit := b.MaxValues
	if n := budgetFloor + b.MaxValuesPerByte*min(len(body), math.MaxInt32); n < limit {
		limit = n
	}
	w := walker{b: body, values: limit, maxDepth: b.MaxDepth}
	if err := w.skip(writer, 0); err != nil {
		if errors.Is(err, errValues) {
			return fmt.Errorf("%w: more than %d values in a %d-byte body (budget: %d, and %d per byte)", ErrTooComplex, limit, len(body), b.MaxValues, b.MaxValuesPerByte)
		}
		return err
	}
	if len(w.b) > 0 {
		return fmt.Errorf("%w: %d bytes left over after the value", ErrBadBody, len(w.b))
	}
	return nil
}

// walker skips one value at a time. The Avro binary encoding is read the
// way hamba/avro reads it, so that both see the same values: varints are
// zigzag longs, and a block whose count is negative carries its byte size,
// which must equal what its items take (hamba/avro skips a block by that
// size when its reader schema drops the field: a size that lied would let
// it read bytes the walk never saw).
type walker struct {
	b        []byte
	values   int // left
	maxDepth int
}

var (
	errShort  = fmt.Errorf("%w: body ends inside a value", ErrBadBody)
	errValues = errors.New("values exhausted") // Check reports the numbers
)

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

func (w *walker) skip(s avro.Schema, depth int) error {
	if w.values--; w.values < 0 {
		return errValues
	}
	switch t := s.(type) {
	case *avro.PrimitiveSchema:
		switch t.Type() {
		case avro.Int, avro.Long:
			_, err := w.long()
			return err
		case avro.Bytes, avro.String:
			n, err := w.long()
			if err != nil {
				return err
			}
			return w.advance(n)
		case avro.Boolean:
			return w.advance(1)
		case avro.Float:
			return w.advance(4)
		case avro.Double:
			return w.advance(8)
		case avro.Null:
			return nil
		}
	case *avro.RecordSchema:
		if depth >= w.maxDepth {
			return w.tooDeep()
		}
		for _, f := range t.Fields() {
			if err := w.skip(f.Type(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case *avro.UnionSchema:
		if depth >= w.maxDepth {
			return w.tooDeep()
		}
		i, err := w.long()
		if err != nil {
			return err
		}
		types := t.Types()
		if i < 0 || i >= int64(len(types)) {
			return fmt.Errorf("%w: union branch %d of %d", ErrBadBody, i, len(types))
		}
		return w.skip(types[i], depth+1)
	case *avro.ArraySchema:
		return w.blocks(t.Items(), false, depth)
	case *avro.MapSchema:
		return w.blocks(t.Values(), true, depth)
	case *avro.RefSchema:
		w.values++ // the record it names counts
		return w.skip(t.Schema(), depth)
	case *avro.NullSchema:
		return nil
	case *avro.EnumSchema:
		_, err := w.long()
		return err
	case *avro.FixedSchema:
		return w.advance(int64(t.Size()))
	}
	return fmt.Errorf("%w: schema type %s not walkable", ErrBadBody, s.Type())
}

func (w *walker) tooDeep() error {
	return fmt.Errorf("%w: nested more than %d levels deep", ErrTooComplex, w.maxDepth)
}

// blocks skips an array's or a map's blocks: a count, negative when a byte
// size follows, that many items (map entries: a string key, then the
// value), until a zero count.
func (w *walker) blocks(item avro.Schema, isMap bool, depth int) error {
	if depth >= w.maxDepth {
		return w.tooDeep()
	}
	for {
		n, err := w.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		size := int64(-1)
		if n < 0 {
			if n == math.MinInt64 {
				return fmt.Errorf("%w: block count %d", ErrBadBody, n)
			}
			n = -n
			if size, err = w.long(); err != nil {
				return err
			}
			if size < 0 || size > int64(len(w.b)) {
				return fmt.Errorf("%w: block byte size %d", ErrBadBody, size)
			}
		}
		// Every item costs at least one value: a count beyond what is
		// left fails now, not after a loop of that many zero-byte items.
		if n > int64(w.values) {
			return errValues
		}
		start := len(w.b)
		for ; n > 0; n-- {
			if isMap {
				if w.values--; w.values < 0 {
					return errValues
				}
				k, err := w.long()
				if err != nil {
					return err
				}
				if err := w.advance(k); err != nil {
					return err
				}
			}
			if err := w.skip(item, depth+1); err != nil {
				return err
			}
		}
		if size >= 0 && int64(start-len(w.b)) != size {
			return fmt.Errorf("%w: a block says it is %d bytes long, its items take %d", ErrBadBody, size, start-len(w.b))
		}
	}
}
