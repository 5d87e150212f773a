package schemas

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/hamba/avro/v2"
)

// Info describes one schema file of a catalogue: an event, or a named type
// that other files use (a shared type).
type Info struct {
	// Name is the Avro full name, e.g. "payments.PaymentCaptured"; for an
	// event it is also the event type stored in the outbox and the record
	// headers.
	Name string
	// File is the path of the .avsc, as given to the loader joined with
	// the file's name.
	File string
	// Text is the schema exactly as written in the file: what is
	// registered, byte for byte, by the producer and by
	// `eventline schemas register`.
	Text string
	// Schema is Text parsed, the named types it uses from other files
	// resolved.
	Schema avro.Schema
	// References are the full names of the named types Text uses that
	// other files of the catalogue define (direct uses only), sorted. Each
	// is registered under the subject of its full name and given to the
	// registry as a schema reference of the same name (see
	// Catalog.Dependencies and RegisterReferences).
	References []string
}

// Catalog is a team's set of schemas: one .avsc file per named type. An
// event's file holds a record; it may use records, enums and fixed types
// defined in other files of the catalogue (shared types such as Money or
// Address, defined once), by name, as Avro's and Confluent's schema
// references do. Build it with LoadCatalog or LoadCatalogDir. Safe for
// concurrent use.
type Catalog struct {
	all []Info // sorted by Name
}

// LoadCatalogDir loads the .avsc files of the directories dirs on disk
// (not their subdirectories), e.g. pipeline.Pipeline.SchemaDirs(); the
// rules are LoadCatalog's.
func LoadCatalogDir(dirs ...string) (*Catalog, error) {
	return loadCatalog(dirs, os.ReadDir, os.ReadFile, filepath.Join)
}

// LoadCatalog loads the .avsc files of directories dirs in fsys, e.g. an
// embed.FS holding the schemas next to the service's code:
//
//	//go:embed eventline.yaml schemas
//	var files embed.FS
//	pipe, err := pipeline.LoadFS(files, "eventline.yaml")
//	cat, err := schemas.LoadCatalog(files, pipe.SchemaDirs()...)
//
// A first directory without .avsc files is an error (ErrEmptyCatalog).
// Every file must define one named type (a record, enum or fixed) and no
// name another file defines; a file may use the types other files define
// (ErrBadReference when one is missing or files use each other in a
// cycle).
func LoadCatalog(fsys fs.FS, dirs ...string) (*Catalog, error) {
	return loadCatalog(dirs,
		func(dir string) ([]fs.DirEntry, error) { return fs.ReadDir(fsys, dir) },
		func(file string) ([]byte, error) { return fs.ReadFile(fsys, file) },
		path.Join)
}

func loadCatalog(dirs []string, readDir func(string) ([]fs.DirEntry, error), readFile func(string) ([]byte, error), join func(...string) string) (*Catalog, error) {
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	var files []sourceFile
	for i, dir := range dirs {
		entries, err := readDir(dir)
		if err != nil {
			return nil, fmt.Errorf("error reading schema directory: %w", err)
		}
		n := 0
		for _, e := range entries {
			if e.IsDir() || path.Ext(e.Name()) != ".avsc" {
				continue
			}
			file := join(dir, e.Name())
			b, err := readFile(file)
			if err != nil {
				return nil, fmt.Errorf("error reading schema file: %w", err)
			}
			files = append(files, sourceFile{name: file, text: b})
			n++
		}
		if n == 0 && i == 0 {
			// An empty catalogue would only fail later, as "not in the
			// catalogue" for files that exist elsewhere.
			return nil, fmt.Errorf("%w: no .avsc file in %s/ (eventline.yaml's schemas.dir, relative to the pipeline file)", ErrEmptyCatalog, dir)
		}
	}
	out, err := parseSet(files)
	if err != nil {
		return nil, err
	}
	return &Catalog{all: out}, nil
}

// ParseFile parses the text of one self-contained .avsc file named file
// (for errors): a named record that uses no type defined elsewhere.
func ParseFile(file string, text []byte) (Info, error) {
	out, err := parseSet([]sourceFile{{name: file, text: text}})
	if err != nil {
		return Info{}, err
	}
	if _, ok := out[0].Schema.(*avro.RecordSchema); !ok {
		return Info{}, fmt.Errorf("%s: top level is %s, want a named record", file, out[0].Schema.Type())
	}
	return out[0], nil
}

// All returns the catalogue's schemas sorted by name.
func (c *Catalog) All() []Info { return append([]Info(nil), c.all...) }

// Lookup returns the schema whose Avro full name is name.
func (c *Catalog) Lookup(name string) (Info, bool) {
	i := sort.Search(len(c.all), func(i int) bool { return c.all[i].Name >= name })
	if i < len(c.all) && c.all[i].Name == name {
		return c.all[i], true
	}
	return Info{}, false
}

// Of returns the catalogue entry of a generated type: the file defining
// its full name, whose schema must be the type's (same canonical form),
// else the generated code is stale and ErrStaleType says so.
func (c *Catalog) Of(ev Event) (Info, error) {
	s := ev.Schema()
	name := FullName(s)
	info, ok := c.Lookup(name)
	if !ok {
		return Info{}, fmt.Errorf("%w: %s (%T) has no .avsc file in the catalogue", ErrNotInCatalog, name, ev)
	}
	if info.Schema.Fingerprint() != s.Fingerprint() {
		return Info{}, fmt.Errorf("%w: %T's schema differs from %s; regenerate the Go types", ErrStaleType, ev, info.File)
	}
	return info, nil
}

// Dependencies returns the catalogue's files that the schema named name
// uses, directly or through others, each after the ones it uses itself:
// the order in which a registry needs them registered before name. A
// self-contained schema has none.
func (c *Catalog) Dependencies(name string) []Info {
	var out []Info
	seen := map[string]bool{name: true}
	var visit func(string)
	visit = func(n string) {
		info, ok := c.Lookup(n)
		if !ok {
			return
		}
		for _, r := range info.References {
			if !seen[r] {
				seen[r] = true
				visit(r)
				if ri, ok := c.Lookup(r); ok {
					out = append(out, ri)
				}
			}
		}
	}
	visit(name)
	return out
}
