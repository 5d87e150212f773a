package schemas

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"

	"github.com/hamba/avro/v2"
)

// Info describes one event schema of a catalogue.
type Info struct {
	// Name is the Avro full name, e.g. "payments.PaymentCaptured"; it is
	// also the event type stored in the outbox and the record headers.
	Name string
	// File is the path of the .avsc, as given to the loader joined with
	// the file's name.
	File string
	// Text is the schema exactly as written in the file: what is
	// registered, byte for byte, by the producer and by
	// `eventline schemas register`.
	Text string
	// Schema is Text parsed.
	Schema avro.Schema
}

// Catalog is a team's set of event schemas: one .avsc file per event,
// each a self-contained named record (no references between files). Build
// it with LoadCatalog or LoadCatalogDir. Safe for concurrent use.
type Catalog struct {
	all []Info // sorted by Name
}

// LoadCatalogDir loads the .avsc files of directory dir (not its
// subdirectories), e.g. pipeline.Pipeline.SchemaDir().
func LoadCatalogDir(dir string) (*Catalog, error) {
	c, err := LoadCatalog(os.DirFS(dir), ".")
	if err != nil {
		return nil, err
	}
	for i := range c.all {
		c.all[i].File = path.Join(dir, path.Base(c.all[i].File))
	}
	return c, nil
}

// LoadCatalog loads the .avsc files of directory dir in fsys, e.g. an
// embed.FS holding the schemas next to the service's code:
//
//	//go:embed eventline.yaml schemas/*.avsc
//	var files embed.FS
//	pipe, err := pipeline.LoadFS(files, "eventline.yaml")
//	cat, err := schemas.LoadCatalog(files, pipe.SchemaDir())
//
// A directory without .avsc files is an error (ErrEmptyCatalog).
// Every file must parse on its own, define one named record, and define a
// name no other file defines.
func LoadCatalog(fsys fs.FS, dir string) (*Catalog, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("error reading schema directory: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".avsc" {
			continue
		}
		file := path.Join(dir, e.Name())
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("error reading schema file: %w", err)
		}
		info, err := ParseFile(file, b)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	if len(out) == 0 {
		// An empty catalogue would only fail later, as "not in the
		// catalogue" for files that exist elsewhere.
		return nil, fmt.Errorf("%w: no .avsc file in %s/ (eventline.yaml's schemas.dir, relative to the pipeline file)", ErrEmptyCatalog, dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return nil, fmt.Errorf("%s and %s both define %s", out[i-1].File, out[i].File, out[i].Name)
		}
	}
	return &Catalog{all: out}, nil
}

// ParseFile parses the text of one .avsc file named file (for errors).
func ParseFile(file string, text []byte) (Info, error) {
	if !json.Valid(text) {
		return Info{}, fmt.Errorf("%s: not valid JSON", file)
	}
	// A fresh cache per file: every file must stand alone, as it is
	// registered alone.
	s, err := avro.ParseBytesWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", file, err)
	}
	named, ok := s.(*avro.RecordSchema)
	if !ok {
		return Info{}, fmt.Errorf("%s: top level is %s, want a named record", file, s.Type())
	}
	return Info{Name: named.FullName(), File: file, Text: string(text), Schema: s}, nil
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
