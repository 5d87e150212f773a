package schemas

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"sync"

	"github.com/hamba/avro/v2"
)

//go:embed avro/*.avsc
var avscFS embed.FS

// Info describes one event schema of the catalogue.
type Info struct {
	// Name is the Avro full name, e.g. "eventline.orders.OrderCreated";
	// it is also the event type stored in the outbox and the record headers.
	Name string
	// File is the path of the .avsc inside the repository, e.g.
	// "schemas/avro/OrderCreated.avsc".
	File string
	// Text is the schema exactly as written in the file: what is registered.
	Text string
	// Schema is Text parsed.
	Schema avro.Schema
}

var (
	catalogOnce sync.Once
	catalog     []Info
	catalogErr  error
)

// All returns the catalogue's schemas sorted by name. The embedded files are
// checked by the package's tests, so an error here means a broken build.
func All() ([]Info, error) {
	catalogOnce.Do(func() { catalog, catalogErr = load(avscFS, "avro") })
	return catalog, catalogErr
}

// Lookup returns the schema whose Avro full name is name.
func Lookup(name string) (Info, bool) {
	all, err := All()
	if err != nil {
		return Info{}, false
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].Name >= name })
	if i < len(all) && all[i].Name == name {
		return all[i], true
	}
	return Info{}, false
}

func load(fsys fs.FS, dir string) ([]Info, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".avsc" {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		// A fresh cache per file: every file must stand alone, as it is
		// registered alone.
		s, err := avro.ParseBytesWithCache(b, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("schemas/%s/%s: %w", dir, e.Name(), err)
		}
		named, ok := s.(avro.NamedSchema)
		if !ok {
			return nil, fmt.Errorf("schemas/%s/%s: top level is %s, want a named record", dir, e.Name(), s.Type())
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("schemas/%s/%s: not valid JSON", dir, e.Name())
		}
		out = append(out, Info{Name: named.FullName(), File: path.Join("schemas", dir, e.Name()), Text: string(b), Schema: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return nil, fmt.Errorf("%s and %s both define %s", out[i-1].File, out[i].File, out[i].Name)
		}
	}
	return out, nil
}
