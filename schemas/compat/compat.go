package compat

import (
	"slices"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
)

// Kind names the sort of an incompatibility, with the names of Avro Java's
// SchemaCompatibility.SchemaIncompatibilityType (plus AmbiguousField, for the
// one case where Java throws instead of answering).
type Kind string

// The kinds of incompatibility.
const (
	// NameMismatch: a reader record, enum or fixed whose unqualified name
	// differs from the writer's, and none of whose aliases is the writer's
	// full name.
	NameMismatch Kind = "NAME_MISMATCH"
	// FixedSizeMismatch: reader and writer fixed types of different sizes.
	FixedSizeMismatch Kind = "FIXED_SIZE_MISMATCH"
	// MissingEnumSymbols: writer enum symbols the reader enum lacks, and the
	// reader enum has no default symbol to use instead.
	MissingEnumSymbols Kind = "MISSING_ENUM_SYMBOLS"
	// ReaderFieldMissingDefaultValue: a reader field the writer record does
	// not have, with no default to fill it.
	ReaderFieldMissingDefaultValue Kind = "READER_FIELD_MISSING_DEFAULT_VALUE"
	// TypeMismatch: a reader type that cannot read the writer's type.
	TypeMismatch Kind = "TYPE_MISMATCH"
	// MissingUnionBranch: a writer type (or writer union branch) that no
	// branch of the reader union can read.
	MissingUnionBranch Kind = "MISSING_UNION_BRANCH"
	// AmbiguousField: a reader field whose name and aliases match more than
	// one writer field (counting its name and an alias equal to it twice).
	// Avro Java throws an AvroRuntimeException here rather than giving a
	// verdict; we call the pair incompatible, since a registry should not
	// accept what the reference implementation cannot judge.
	AmbiguousField Kind = "AMBIGUOUS_FIELD"
)

// Incompatibility is one reason the reader schema cannot read all data
// written with the writer schema.
type Incompatibility struct {
	Kind Kind
	// Location is the JSON pointer Avro Java's Incompatibility.getLocation
	// gives: a path through the reader schema ("/" is its root) made of
	// "fields/<position>", "type", "items", "values", "name", "size" and
	// "symbols". Where a writer union is being read, the next token is the
	// index of the writer's branch, not a reader position. The path follows
	// named types through references, so it is a path in the schema as a
	// tree, not always in its JSON text.
	Location string
	// Path is Location with field names instead of positions and, for union
	// branches, the writer branch's type name instead of its index:
	// "/fields/amount/type" for "/fields/1/type".
	Path string
	// Message says what is wrong, naming the reader and writer types, fields
	// or symbols involved.
	Message string
	// Hint says how to make the schemas compatible.
	Hint string
}

// CheckPair reports every reason the reader schema cannot read data written
// with the writer schema; none means it can. Its verdict (none or some) is
// Avro Java's checkReaderWriterCompatibility(reader, writer).
func CheckPair(reader, writer avro.Schema) []Incompatibility {
	c := newChecker()
	return c.report(c.run(reader, writer))
}

// step is one token of a location, in Java's form (positions) and in the
// human form (names).
type step struct {
	pointer string
	human   string
}

// finding is an incompatibility whose location is relative to the
// reader/writer pair at which it was found. Keeping it relative is what lets a
// remembered verdict be reused under another field and still point there
// (Java reuses its remembered result with the location of its first visit).
type finding struct {
	kind Kind
	at   []step
	// named is set once the message names the reader field it concerns, so
	// that enclosing fields do not prefix theirs.
	named   bool
	message string
	hint    string
}

// under puts findings one step deeper.
func under(s step, fs []finding) []finding {
	if len(fs) == 0 {
		return nil
	}
	out := make([]finding, len(fs))
	for i, f := range fs {
		at := make([]step, 0, len(f.at)+1)
		at = append(at, s)
		f.at = append(at, f.at...)
		out[i] = f
	}
	return out
}

type pairKey struct {
	reader avro.Schema
	writer avro.Schema
}

// verdict is what the checker remembers about one reader/writer pair.
type verdict struct {
	done     bool // false while the pair is still being checked
	findings []finding
}

// checker mirrors the structure of Java's ReaderWriterCompatibilityChecker,
// order of visits included. The order matters: Java remembers each pair's
// result, including results computed while an enclosing recursive pair was
// assumed compatible, and reuses them later in the same check. Visiting pairs
// in another order (or short-circuiting differently) would give different
// verdicts on some recursive schemas.
type checker struct {
	// seen is keyed by schema identity: hamba, like Java, has one value per
	// named type definition, which every reference to it points at.
	seen map[pairKey]*verdict
	// reusedIncompatible counts lookups that returned a remembered non-empty
	// result. Java reports those findings at their first location again; we
	// report them where they were met. The differential test uses this to
	// tell that expected difference from a real one.
	reusedIncompatible int
	// ambiguous is the first AmbiguousField met anywhere, kept because Java
	// throws as soon as it meets one, even while trying a reader union
	// branch that another branch then replaces.
	ambiguous *finding
}

func newChecker() *checker {
	return &checker{seen: make(map[pairKey]*verdict)}
}

// run checks a top-level pair.
func (c *checker) run(reader, writer avro.Schema) []finding {
	fs := c.check(reader, writer)
	if c.ambiguous != nil && !slices.ContainsFunc(fs, func(f finding) bool { return f.kind == AmbiguousField }) {
		// Met only inside a union branch that was not chosen, so its
		// location there is lost; report it at the root.
		f := *c.ambiguous
		f.at = nil
		f.message += " (met while trying the branches of a reader union)"
		fs = append(fs, f)
	}
	return fs
}

func (c *checker) report(fs []finding) []Incompatibility {
	out := make([]Incompatibility, 0, len(fs))
	for _, f := range fs {
		ptr := make([]string, len(f.at))
		human := make([]string, len(f.at))
		for i, s := range f.at {
			ptr[i] = escapePointer(s.pointer)
			human[i] = escapePointer(s.human)
		}
		out = append(out, Incompatibility{
			Kind:     f.kind,
			Location: "/" + strings.Join(ptr, "/"),
			Path:     "/" + strings.Join(human, "/"),
			Message:  f.message,
			Hint:     f.hint,
		})
	}
	return out
}

// escapePointer escapes a JSON pointer reference token (RFC 6901).
func escapePointer(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

// deref resolves a reference to the named type it points at, so that every
// use of a named type is the same value (and the same map key).
func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

// check returns the findings for one pair, relative to it.
func (c *checker) check(reader, writer avro.Schema) []finding {
	reader, writer = deref(reader), deref(writer)
	key := pairKey{reader, writer}
	if v, ok := c.seen[key]; ok {
		if !v.done {
			// Met again while still being checked: a recursive type. As in
			// Java, assume compatible unless proven otherwise elsewhere.
			return nil
		}
		if len(v.findings) > 0 {
			c.reusedIncompatible++
		}
		return v.findings
	}
	v := &verdict{}
	c.seen[key] = v
	v.findings = c.calculate(reader, writer)
	v.done = true
	return v.findings
}

// recall returns what was already decided for a pair, without checking it:
// explanations must not check new pairs, which would change what later
// checks find remembered and so, in rare recursive cases, their verdicts.
func (c *checker) recall(reader, writer avro.Schema) ([]finding, bool) {
	v, ok := c.seen[pairKey{deref(reader), deref(writer)}]
	if !ok || !v.done {
		return nil, false
	}
	return v.findings, true
}

func (c *checker) calculate(reader, writer avro.Schema) []finding {
	if reader.Type() == writer.Type() {
		switch r := reader.(type) {
		case *avro.ArraySchema:
			w := writer.(*avro.ArraySchema)
			return under(step{"items", "items"}, c.check(r.Items(), w.Items()))
		case *avro.MapSchema:
			w := writer.(*avro.MapSchema)
			return under(step{"values", "values"}, c.check(r.Values(), w.Values()))
		case *avro.FixedSchema:
			w := writer.(*avro.FixedSchema)
			fs := checkNames(r, w)
			if r.Size() != w.Size() {
				fs = append(fs, fixedSizeMismatch(r, w))
			}
			return fs
		case *avro.EnumSchema:
			w := writer.(*avro.EnumSchema)
			fs := checkNames(r, w)
			return append(fs, checkEnumSymbols(r, w)...)
		case *avro.RecordSchema:
			w := writer.(*avro.RecordSchema)
			fs := checkNames(r, w)
			return append(fs, c.checkFields(r, w)...)
		case *avro.UnionSchema:
			// Each writer branch must be readable by the reader union. Java
			// checks each branch against the whole reader union and keeps
			// only "missing branch" at the writer branch's index.
			var fs []finding
			for i, wb := range writer.(*avro.UnionSchema).Types() {
				if len(c.check(r, wb)) > 0 {
					fs = append(fs, under(branchStep(i, wb), []finding{c.missingBranch(r, wb, i)})...)
				}
			}
			return fs
		default:
			// Equal primitive types (logical types are ignored).
			return nil
		}
	}

	// A writer union is readable when every one of its branches is.
	if w, ok := writer.(*avro.UnionSchema); ok {
		var fs []finding
		for i, wb := range w.Types() {
			fs = append(fs, under(branchStep(i, wb), c.check(reader, wb))...)
		}
		return fs
	}

	// A reader union reads a non-union writer when any branch does; Java
	// stops at the first branch that does, and so must we (see checker).
	if r, ok := reader.(*avro.UnionSchema); ok {
		for _, rb := range r.Types() {
			if len(c.check(rb, writer)) == 0 {
				return nil
			}
		}
		return []finding{c.missingBranch(r, writer, -1)}
	}

	if promotes(writer.Type(), reader.Type()) {
		return nil
	}
	return []finding{typeMismatch(reader, writer)}
}

// promotes reports whether a value written as type w reads as type r, r != w.
func promotes(w, r avro.Type) bool {
	switch w {
	case avro.Int:
		return r == avro.Long || r == avro.Float || r == avro.Double
	case avro.Long:
		return r == avro.Float || r == avro.Double
	case avro.Float:
		return r == avro.Double
	case avro.String:
		return r == avro.Bytes
	case avro.Bytes:
		return r == avro.String
	}
	return false
}

func branchStep(i int, branch avro.Schema) step {
	return step{strconv.Itoa(i), shortName(branch)}
}

// namesMatch is Java's schemaNameEquals: unqualified names, or a reader alias
// equal to the writer's full name. hamba, like Java, stores a named type's
// aliases fully qualified.
func namesMatch(r, w avro.NamedSchema) bool {
	return r.Name() == w.Name() || slices.Contains(r.Aliases(), w.FullName())
}

func checkNames(r, w avro.NamedSchema) []finding {
	if namesMatch(r, w) {
		return nil
	}
	return []finding{nameMismatch(r, w)}
}

func checkEnumSymbols(r, w *avro.EnumSchema) []finding {
	var missing []string
	for _, s := range w.Symbols() {
		if !slices.Contains(r.Symbols(), s) && !slices.Contains(missing, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	// Java asks that the default be one of the reader's symbols; hamba's
	// parser already insists on that, so this is belt and braces.
	if r.HasDefault() && slices.Contains(r.Symbols(), r.Default()) {
		return nil
	}
	slices.Sort(missing) // Java reports them sorted
	return []finding{missingEnumSymbols(r, missing)}
}

func (c *checker) checkFields(r, w *avro.RecordSchema) []finding {
	var fs []finding
	for i, rf := range r.Fields() {
		at := step{strconv.Itoa(i), rf.Name()}
		matches := lookupWriterFields(w, rf)
		var sub []finding
		switch {
		case len(matches) > 1:
			sub = []finding{ambiguousField(r, rf, matches)}
			if c.ambiguous == nil {
				c.ambiguous = &sub[0]
			}
		case len(matches) == 1:
			sub = under(step{"type", "type"}, c.check(rf.Type(), matches[0].Type()))
			for j := range sub {
				if !sub[j].named {
					sub[j].message = fieldContext(rf, matches[0]) + sub[j].message
					sub[j].named = true
				}
			}
		case rf.HasDefault():
			// Filled from the default.
		default:
			if e, ok := deref(rf.Type()).(*avro.EnumSchema); ok && e.HasDefault() {
				// Java compares the field's enum with the writer record
				// itself here, which is always a type mismatch: an enum's
				// default symbol does not stand in for a field default.
				sub = under(step{"type", "type"}, []finding{enumFieldWithoutDefault(rf, e, w)})
			} else {
				sub = []finding{missingDefault(rf, w)}
			}
		}
		fs = append(fs, under(at, sub)...)
	}
	return under(step{"fields", "fields"}, fs)
}

// lookupWriterFields returns the writer fields matching a reader field by its
// name or one of its aliases, counted as Java's lookupWriterField counts
// them: its name and an equal alias both count (Java keeps aliases in a set,
// so a repeated alias counts once).
func lookupWriterFields(w *avro.RecordSchema, rf *avro.Field) []*avro.Field {
	var out []*avro.Field
	if f := writerField(w, rf.Name()); f != nil {
		out = append(out, f)
	}
	var aliases []string
	for _, a := range rf.Aliases() {
		if slices.Contains(aliases, a) {
			continue
		}
		aliases = append(aliases, a)
		if f := writerField(w, a); f != nil {
			out = append(out, f)
		}
	}
	return out
}

func writerField(w *avro.RecordSchema, name string) *avro.Field {
	for _, f := range w.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}
