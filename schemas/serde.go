package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Event is implemented by the generated types (pointer receivers).
type Event interface {
	Schema() avro.Schema
}

// SchemaSource answers "which schema has this id". *sr.Client satisfies it.
type SchemaSource interface {
	SchemaByID(ctx context.Context, id int) (sr.Schema, error)
}

// ReferenceSource is a SchemaSource that also answers "which schema is
// version v of subject s", which decoding with a writer schema that has
// references needs (each reference names a subject and version).
// *sr.Client satisfies it.
type ReferenceSource interface {
	SchemaSource
	SchemaByVersion(ctx context.Context, subject string, version int) (sr.SubjectSchema, error)
}

// avroAPI bounds what a hostile body can make the decoder allocate (the
// defaults would let a 10-byte record ask for a gigabyte), and writes array
// and map blocks without the optional byte-size header, as Apache Avro's and
// Confluent's serializers do, so eventline's bytes equal theirs.
var avroAPI = avro.Config{
	MaxByteSliceSize:       8 << 20,
	MaxSliceAllocSize:      1 << 20,
	DisableBlockSizeHeader: true,
}.Freeze()

// Serde encodes values in the Confluent wire format (magic byte 0, 4-byte
// big-endian schema id, Avro body) and decodes such values written with any
// schema the registry knows into a reader type. Writer schemas are fetched
// once per id and cached, as are writer→reader resolutions. Every body is
// checked against the Serde's Budget before it is decoded. Safe for
// concurrent use.
type Serde struct {
	src    SchemaSource
	budget Budget

	mu       sync.RWMutex
	writers  map[int]avro.Schema
	resolved map[resolveKey]avro.Schema
	missing  map[int]missingID // ids the registry said it does not have
	refs     map[refKey]sr.SubjectSchema
}

// refKey is one referenced subject version, as a reference names it.
type refKey struct {
	subject string
	version int
}

// maxCachedRefs bounds the referenced schemas a Serde keeps; when full, it
// starts over (each writer schema is parsed once and kept in writers).
const maxCachedRefs = 10000

// missingID is a negative answer, remembered until expires: a stream of
// records with unknown ids (garbage, or another cluster's) costs one
// registry request per id per NegativeTTL, not one per record.
type missingID struct {
	err     error
	expires time.Time
}

// NegativeTTL is how long an id the registry does not know is answered
// from the cache; an id registered meanwhile is seen after it.
const NegativeTTL = 30 * time.Second

// maxMissing bounds the negative cache; when full, expired entries are
// dropped, and if none has expired, all of them.
const maxMissing = 10000

type resolveKey struct {
	id     int
	member int      // the writer union's member read, or -1: the writer itself
	reader [32]byte // reader's canonical fingerprint
}

// SerdeOption configures a Serde.
type SerdeOption func(*Serde)

// WithBudget sets the Budget every body is checked against before it is
// decoded (zero fields: the defaults). A body over it fails with
// ErrTooComplex, a permanent error: a consumer dead-letters the record.
func WithBudget(b Budget) SerdeOption {
	return func(s *Serde) { s.budget = b.withDefaults() }
}

// NewSerde returns a Serde fetching writer schemas from src, checking
// bodies against the default Budget unless WithBudget says otherwise.
func NewSerde(src SchemaSource, opts ...SerdeOption) *Serde {
	s := &Serde{src: src, budget: Budget{}.withDefaults(), writers: map[int]avro.Schema{}, resolved: map[resolveKey]avro.Schema{}, missing: map[int]missingID{}, refs: map[refKey]sr.SubjectSchema{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Budget returns the Budget s checks bodies against, defaults filled in.
func (s *Serde) Budget() Budget { return s.budget }

// HeaderSize is the length of the Confluent wire-format header.
const HeaderSize = 5

// AppendHeader appends the Confluent header for id to b.
func AppendHeader(b []byte, id int) []byte {
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, uint32(id))
}

// SplitHeader returns the schema id and Avro body of a framed value.
func SplitHeader(b []byte) (id int, body []byte, err error) {
	if len(b) < HeaderSize {
		return 0, nil, &DecodeError{Err: ErrShortBuffer}
	}
	if b[0] != 0 {
		return 0, nil, &DecodeError{Err: fmt.Errorf("%w (got 0x%02x)", ErrBadMagic, b[0])}
	}
	return int(binary.BigEndian.Uint32(b[1:HeaderSize])), b[HeaderSize:], nil
}

// Encode frames v, encoded with schema, under id. The caller guarantees id
// is the registry id of schema (the producer resolves it at startup).
func Encode(id int, schema avro.Schema, v any) ([]byte, error) {
	return AppendEncode(make([]byte, 0, 64), id, schema, v)
}

// AppendEncode is Encode appending to b.
func AppendEncode(b []byte, id int, schema avro.Schema, v any) ([]byte, error) {
	w := writerPool.Get().(*avro.Writer)
	defer writerPool.Put(w)
	w.Reset(nil)
	w.Error = nil
	w.WriteVal(schema, v)
	if w.Error != nil {
		return nil, fmt.Errorf("encoding %T as %s: %w", v, FullName(schema), w.Error)
	}
	return append(AppendHeader(b, id), w.Buffer()...), nil
}

// Pooled encoder and decoder state: encoding into a caller's buffer and
// decoding then allocate nothing beyond the values themselves.
var (
	writerPool = sync.Pool{New: func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(avroAPI)) }}
	readerPool = sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(avroAPI)) }}
)

// Decode decodes a framed value into v, resolving the writer schema (by the
// value's id) to v's schema.
func (s *Serde) Decode(ctx context.Context, b []byte, v Event) error {
	return s.DecodeAs(ctx, b, v.Schema(), v)
}

// DecodeAs decodes a framed value into v, read as reader. v may be a
// generated type, a map[string]any, or a pointer to any (generic form).
func (s *Serde) DecodeAs(ctx context.Context, b []byte, reader avro.Schema, v any) error {
	id, body, err := SplitHeader(b)
	if err != nil {
		return err
	}
	w, err := s.Writer(ctx, id)
	if err != nil {
		return err
	}
	if err := s.check(id, w, body); err != nil {
		return err
	}
	member := -1
	if _, isUnion := reader.(*avro.UnionSchema); !isUnion {
		// A writer that is a union of event types (Confluent's several
		// types in one topic): the body starts with the member's index,
		// and the rest is that member, read as reader.
		if m, _, rest, ok, err := unionMember(id, w, body); err != nil {
			return err
		} else if ok {
			member, body = m, rest
		}
	}
	schema, err := s.readerFor(ctx, id, member, reader)
	if err != nil {
		return err
	}
	return decodeBody(id, schema, body, v)
}

// unionMember reads which member of the top-level union w a body holds:
// its index, its schema and the rest of the body. ok is false when w is not
// a union.
func unionMember(id int, w avro.Schema, body []byte) (member int, schema avro.Schema, rest []byte, ok bool, err error) {
	u, isUnion := w.(*avro.UnionSchema)
	if !isUnion {
		return 0, nil, body, false, nil
	}
	idx, n := binary.Varint(body)
	if n <= 0 || idx < 0 || idx >= int64(len(u.Types())) {
		return 0, nil, nil, false, &DecodeError{ID: id, Err: fmt.Errorf("%w: union index out of range", ErrBadBody)}
	}
	return int(idx), u.Types()[idx], body[n:], true, nil
}

// EventType returns the event type of a framed value: its writer schema's
// full name, or for a writer that is a union of event types (Confluent's
// way to put several types in one topic), the full name of the member the
// value holds.
func (s *Serde) EventType(ctx context.Context, b []byte) (string, error) {
	id, body, err := SplitHeader(b)
	if err != nil {
		return "", err
	}
	w, err := s.Writer(ctx, id)
	if err != nil {
		return "", err
	}
	if _, m, _, ok, err := unionMember(id, w, body); err != nil {
		return "", err
	} else if ok {
		return FullName(m), nil
	}
	return FullName(w), nil
}

// DecodeGeneric decodes a framed value with its own writer schema into the
// generic form (maps, slices, primitives) and returns the writer schema.
func (s *Serde) DecodeGeneric(ctx context.Context, b []byte) (any, avro.Schema, error) {
	id, body, err := SplitHeader(b)
	if err != nil {
		return nil, nil, err
	}
	w, err := s.Writer(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if err := s.check(id, w, body); err != nil {
		return nil, nil, err
	}
	if _, m, rest, ok, err := unionMember(id, w, body); err != nil {
		return nil, nil, err
	} else if ok {
		w, body = m, rest // the member the value holds, as EventType says
	}
	var v any
	if err := decodeBody(id, w, body, &v); err != nil {
		return nil, nil, err
	}
	return v, w, nil
}

// check walks body, written with w (schema id), within the Serde's
// budget, before hamba/avro allocates anything for it.
func (s *Serde) check(id int, w avro.Schema, body []byte) error {
	if err := s.budget.Check(w, body); err != nil {
		if errors.Is(err, ErrTooComplex) {
			err = fmt.Errorf("%w: %w", ErrBadBody, err)
		}
		return &DecodeError{ID: id, Err: err}
	}
	return nil
}

func decodeBody(id int, schema avro.Schema, body []byte, v any) (err error) {
	// hamba/avro is not written for hostile input everywhere; a panic on a
	// crafted body must become a permanent error, not a crashed consumer.
	defer func() {
		if r := recover(); r != nil {
			err = &DecodeError{ID: id, Err: fmt.Errorf("%w: decoder panic: %v", ErrBadBody, r)}
		}
	}()
	r := readerPool.Get().(*avro.Reader)
	defer readerPool.Put(r)
	r.Reset(body)
	r.Error = nil
	r.ReadVal(schema, v)
	if r.Error != nil {
		return &DecodeError{ID: id, Err: fmt.Errorf("%w: %v", ErrBadBody, r.Error)}
	}
	if r.Peek(); r.Error == nil {
		return &DecodeError{ID: id, Err: fmt.Errorf("%w: bytes left over after the record", ErrBadBody)}
	}
	return nil
}

// Writer returns the writer schema registered under id, fetching it once.
func (s *Serde) Writer(ctx context.Context, id int) (avro.Schema, error) {
	s.mu.RLock()
	w, ok := s.writers[id]
	miss, missed := s.missing[id]
	s.mu.RUnlock()
	if ok {
		return w, nil
	}
	if missed && time.Now().Before(miss.expires) {
		return nil, miss.err
	}
	got, err := s.src.SchemaByID(ctx, id)
	if err != nil {
		if isNotFound(err) {
			err := &DecodeError{ID: id, Err: fmt.Errorf("%w: the registry has no schema %d", ErrUnknownSchemaID, id)}
			s.rememberMissing(id, err)
			return nil, err
		}
		// Not permanent: the registry may be down or slow.
		return nil, fmt.Errorf("error fetching schema %d from the registry: %w", id, err)
	}
	if got.Type != sr.TypeAvro {
		return nil, &DecodeError{ID: id, Err: fmt.Errorf("%w: it is %s", ErrUnsupportedSchema, got.Type)}
	}
	cache := &avro.SchemaCache{}
	if len(got.References) > 0 {
		if err := s.loadRefs(ctx, id, cache, got.References, 0, map[refKey]bool{}); err != nil {
			return nil, err
		}
	}
	w, err = avro.ParseWithCache(got.Schema, "", cache)
	if err != nil {
		return nil, &DecodeError{ID: id, Err: fmt.Errorf("%w: %v", ErrUnsupportedSchema, err)}
	}
	s.mu.Lock()
	s.writers[id] = w
	s.mu.Unlock()
	return w, nil
}

// loadRefs parses the schemas refs name into cache, each after the ones it
// references itself, fetching each subject version once per Serde. The
// Budget bounds how many distinct schemas (MaxReferences) and how deep
// (MaxDepth) a writer's references go.
func (s *Serde) loadRefs(ctx context.Context, id int, cache *avro.SchemaCache, refs []sr.SchemaReference, depth int, seen map[refKey]bool) error {
	if depth >= s.budget.MaxDepth {
		return &DecodeError{ID: id, Err: fmt.Errorf("%w: schema references nest deeper than %d", ErrUnsupportedSchema, s.budget.MaxDepth)}
	}
	rs, ok := s.src.(ReferenceSource)
	if !ok {
		return &DecodeError{ID: id, Err: fmt.Errorf("%w: the schema has references and the Serde's source (%T) cannot fetch subject versions", ErrUnsupportedSchema, s.src)}
	}
	for _, ref := range refs {
		k := refKey{ref.Subject, ref.Version}
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(seen) > s.budget.MaxReferences {
			return &DecodeError{ID: id, Err: fmt.Errorf("%w: schema references pull in more than %d schemas", ErrUnsupportedSchema, s.budget.MaxReferences)}
		}
		s.mu.RLock()
		ss, cached := s.refs[k]
		s.mu.RUnlock()
		if !cached {
			var err error
			ss, err = rs.SchemaByVersion(ctx, ref.Subject, ref.Version)
			if err != nil {
				if isNotFound(err) {
					return &DecodeError{ID: id, Err: fmt.Errorf("%w: reference %s (subject %s version %d): the registry does not have it", ErrUnsupportedSchema, ref.Name, ref.Subject, ref.Version)}
				}
				return fmt.Errorf("error fetching reference %s (subject %s version %d) of schema %d: %w", ref.Name, ref.Subject, ref.Version, id, err)
			}
			if ss.Type != sr.TypeAvro {
				return &DecodeError{ID: id, Err: fmt.Errorf("%w: reference %s is %s", ErrUnsupportedSchema, ref.Name, ss.Type)}
			}
			if ref.Version > 0 { // "latest" (-1) is not kept: it moves
				s.mu.Lock()
				if len(s.refs) >= maxCachedRefs {
					clear(s.refs)
				}
				s.refs[k] = ss
				s.mu.Unlock()
			}
		}
		if err := s.loadRefs(ctx, id, cache, ss.References, depth+1, seen); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(ss.Schema.Schema, "", cache); err != nil {
			return &DecodeError{ID: id, Err: fmt.Errorf("%w: reference %s (subject %s version %d): %v", ErrUnsupportedSchema, ref.Name, ref.Subject, ref.Version, err)}
		}
	}
	return nil
}

func (s *Serde) rememberMissing(id int, err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.missing) >= maxMissing {
		for k, m := range s.missing {
			if now.After(m.expires) {
				delete(s.missing, k)
			}
		}
		if len(s.missing) >= maxMissing {
			clear(s.missing)
		}
	}
	s.missing[id] = missingID{err: err, expires: now.Add(NegativeTTL)}
}

func (s *Serde) readerFor(ctx context.Context, id, member int, reader avro.Schema) (avro.Schema, error) {
	key := resolveKey{id: id, member: member, reader: reader.Fingerprint()}
	s.mu.RLock()
	r, ok := s.resolved[key]
	s.mu.RUnlock()
	if ok {
		return r, nil
	}
	w, err := s.Writer(ctx, id)
	if err != nil {
		return nil, err
	}
	if member >= 0 {
		w = w.(*avro.UnionSchema).Types()[member]
	}
	if w.Fingerprint() == key.reader {
		r = w
	} else {
		r, err = avro.NewSchemaCompatibility().Resolve(reader, w)
		if err != nil {
			return nil, &DecodeError{ID: id, Err: fmt.Errorf("%w: %s as %s: %v", ErrUnresolvable, FullName(w), FullName(reader), err)}
		}
	}
	s.mu.Lock()
	s.resolved[key] = r
	s.mu.Unlock()
	return r, nil
}

// FullName is a schema's Avro full name (namespace.name), or its type for
// an unnamed schema: the event type eventline stores and dispatches on.
func FullName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}
