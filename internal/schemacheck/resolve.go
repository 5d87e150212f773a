package schemacheck

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing/fstest"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas"
	"github.com/eventline/eventline/schemas/compat"
)

// srcFile is one .avsc file of a set: the working tree's schema
// directories, or the same directories at one commit.
type srcFile struct {
	path    string // slash-separated, as reported
	text    string
	name    string   // full name of its top-level type ("" when unknown)
	defines []string // every named type it defines (compat.Names)
}

// fileSet indexes files by the named types they define, to find the files
// a schema uses (its references) as schemas.Catalog does, one file at a
// time: a broken or ambiguous file elsewhere does not stop the others from
// being checked.
type fileSet struct {
	files  []srcFile
	byName map[string][]int
}

func newFileSet(files []srcFile) *fileSet {
	s := &fileSet{files: files, byName: map[string][]int{}}
	for i := range s.files {
		f := &s.files[i]
		if f.name == "" {
			f.name = topName(f.text)
		}
		if f.defines == nil {
			f.defines, _, _ = compat.Names(f.text)
		}
		for _, n := range f.defines {
			s.byName[n] = append(s.byName[n], i)
		}
	}
	return s
}

// resolved is one schema file parsed with the named types it uses.
type resolved struct {
	schema avro.Schema
	name   string
	// refs are the full names of the files it uses, directly or not (the
	// shared types a finding's path may pass through); nil when it is
	// self-contained.
	refs map[string]bool
}

// maxRefFiles bounds the files one schema may pull in through references.
const maxRefFiles = 256

// resolve parses text, the schema file at path p, after the files of the
// set that define the named types it uses, transitively. The file itself
// (a file of the set with p's top-level name) is never its own
// dependency. Where several files define a used name, the one in p's
// directory wins; otherwise that is an error, as in schemas.Catalog.
func (s *fileSet) resolve(p, text string) (resolved, error) {
	_, uses, err := compat.Names(text)
	if err != nil {
		return resolved{}, err
	}
	if len(uses) == 0 {
		sch, err := compat.Parse(text)
		if err != nil {
			return resolved{}, err
		}
		return resolved{schema: sch, name: fullName(sch)}, nil
	}
	own := topName(text)
	chosen := map[int]bool{}
	var order []int
	queue := slices.Clone(uses)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		var cands []int
		for _, i := range s.byName[n] {
			if s.files[i].name != own {
				cands = append(cands, i)
			}
		}
		if len(cands) > 1 {
			var near []int
			for _, i := range cands {
				if path.Dir(s.files[i].path) == path.Dir(p) {
					near = append(near, i)
				}
			}
			if len(near) == 1 {
				cands = near
			}
		}
		switch {
		case len(cands) == 0:
			return resolved{}, fmt.Errorf("%w: %s uses %s, which no schema file defines", schemas.ErrBadReference, p, n)
		case len(cands) > 1:
			return resolved{}, fmt.Errorf("%w: %s uses %s, which %s and %s both define", schemas.ErrBadReference, p, n, s.files[cands[0]].path, s.files[cands[1]].path)
		}
		i := cands[0]
		if chosen[i] {
			continue
		}
		if chosen[i], order = true, append(order, i); len(order) > maxRefFiles {
			return resolved{}, fmt.Errorf("%w: %s uses more than %d schema files", schemas.ErrBadReference, p, maxRefFiles)
		}
		_, more, err := compat.Names(s.files[i].text)
		if err != nil {
			return resolved{}, fmt.Errorf("%s: %w", s.files[i].path, err)
		}
		queue = append(queue, more...)
	}
	// schemas.LoadCatalog orders, parses and checks the few files involved
	// as the producer will: the same rules, not a second implementation.
	key := func(q string) string {
		if !validFSPath(q) {
			return "_/" + path.Base(q)
		}
		return q
	}
	fsys := fstest.MapFS{}
	dirs := []string{path.Dir(key(p))}
	fsys[key(p)] = &fstest.MapFile{Data: []byte(text)}
	for _, i := range order {
		k := key(s.files[i].path)
		if _, dup := fsys[k]; dup {
			k = path.Join(path.Dir(k), "_"+strconv.Itoa(i)+"_"+path.Base(k))
		}
		fsys[k] = &fstest.MapFile{Data: []byte(s.files[i].text)}
		if d := path.Dir(k); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	cat, err := schemas.LoadCatalog(fsys, dirs...)
	if err != nil {
		return resolved{}, err
	}
	info, ok := cat.Lookup(own)
	if !ok {
		return resolved{}, fmt.Errorf("%s: its top-level type has no name", p)
	}
	out := resolved{schema: info.Schema, name: info.Name, refs: map[string]bool{}}
	for _, d := range cat.Dependencies(own) {
		out.refs[d.Name] = true
	}
	return out, nil
}

func validFSPath(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && !slices.Contains(strings.Split(p, "/"), "..")
}

// topName returns the full name of a schema text's top-level named type,
// read from its JSON without parsing the schema: a text that uses types
// defined elsewhere cannot be parsed alone, and hamba exposes no way to read
// a name without resolving the rest.
func topName(text string) string {
	var top struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	if json.Unmarshal([]byte(text), &top) != nil || top.Name == "" {
		return ""
	}
	if strings.Contains(top.Name, ".") || top.Namespace == "" {
		return strings.TrimPrefix(top.Name, ".")
	}
	return top.Namespace + "." + top.Name
}

// throughRefs finds where a problem's location passes into a shared type:
// it walks the reader and writer schemas along the pointer location (field
// positions, writer union branch indexes) and notes each step that enters
// a named type another file defines (readerRefs, writerRefs: each side's
// resolved refs). via lists those types, outermost first; refPath is the
// human path cut before each of them, e.g. "/fields/amount/type ->
// acme.shared.Money /fields/currency". Both are empty when the location
// stays inside the file. compat reports paths through the schema as a tree
// and does not know which file defined what, hence this walk.
func throughRefs(p compat.Problem, reader, writer avro.Schema, readerRefs, writerRefs map[string]bool) (via []string, refPath string) {
	if len(readerRefs) == 0 && len(writerRefs) == 0 {
		return nil, ""
	}
	ptr := strings.Split(strings.TrimPrefix(p.Location, "/"), "/")
	human := strings.Split(strings.TrimPrefix(p.Path, "/"), "/")
	if len(ptr) != len(human) || p.Location == "/" {
		return nil, ""
	}
	r, w := reader, writer
	var parts, seg []string
	last := ""
	// enter notes a boundary when s is a shared type not just entered.
	enter := func(s avro.Schema, refs map[string]bool) bool {
		if s == nil {
			return false
		}
		n, ok := deref(s).(avro.NamedSchema)
		if !ok || !refs[n.FullName()] || n.FullName() == last {
			return false
		}
		last = n.FullName()
		via = append(via, last)
		if len(seg) > 0 {
			parts = append(parts, "/"+strings.Join(seg, "/"))
		}
		parts, seg = append(parts, "-> "+last), nil
		return true
	}
	for i := 0; i < len(ptr); i++ {
		seg = append(seg, human[i])
		switch tok := ptr[i]; tok {
		case "fields":
			if i+1 >= len(ptr) {
				continue
			}
			i++
			seg = append(seg, human[i])
			pos, err := strconv.Atoi(ptr[i])
			rr, ok := deref(r).(*avro.RecordSchema)
			if err != nil || !ok || pos < 0 || pos >= len(rr.Fields()) {
				return nil, ""
			}
			rf := rr.Fields()[pos]
			var wf *avro.Field
			if wr, ok := deref(w).(*avro.RecordSchema); ok {
				wf = matchField(wr, rf)
			}
			r, w = rf.Type(), nil
			if wf != nil {
				w = wf.Type()
			}
		case "type":
			if !enter(r, readerRefs) {
				enter(w, writerRefs)
			}
		case "items", "values":
			r, w = inner(r, tok), inner(w, tok)
			if !enter(r, readerRefs) {
				enter(w, writerRefs)
			}
		default:
			n, err := strconv.Atoi(tok)
			if err != nil {
				continue // name, size, symbols: the end of the path
			}
			// A writer union's branch; the reader stays where it is.
			wu, ok := deref(w).(*avro.UnionSchema)
			if !ok || n < 0 || n >= len(wu.Types()) {
				return nil, ""
			}
			// Its token is the branch's type name: the arrow says it.
			w = wu.Types()[n]
			seg = seg[:len(seg)-1]
			if !enter(w, writerRefs) && shortName(w) != last {
				seg = append(seg, human[i])
			}
		}
	}
	if len(via) == 0 {
		return nil, ""
	}
	if len(seg) > 0 {
		parts = append(parts, "/"+strings.Join(seg, "/"))
	}
	return via, strings.Join(parts, " ")
}

// matchField is the writer field a reader field reads: by name, else by
// one of its aliases (compat has checked there is one at most).
func matchField(w *avro.RecordSchema, rf *avro.Field) *avro.Field {
	for _, name := range append([]string{rf.Name()}, rf.Aliases()...) {
		for _, f := range w.Fields() {
			if f.Name() == name {
				return f
			}
		}
	}
	return nil
}

func inner(s avro.Schema, tok string) avro.Schema {
	switch t := deref(s).(type) {
	case *avro.ArraySchema:
		if tok == "items" {
			return t.Items()
		}
	case *avro.MapSchema:
		if tok == "values" {
			return t.Values()
		}
	}
	return nil
}

func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

func shortName(s avro.Schema) string {
	if n, ok := deref(s).(avro.NamedSchema); ok {
		return n.FullName()
	}
	return ""
}
