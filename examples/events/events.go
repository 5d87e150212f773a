// Package events is the demo saga's domain: the orders and inventory
// services' Avro schemas (avro/*.avsc, one event per file), the Go types
// hamba's avrogen generates from them (events_gen.go), and their pipeline
// file (eventline.yaml). It is one user of eventline among others and uses
// only the public packages: a team's own module would hold the same three
// things.
package events

import (
	"embed"
	"sync"

	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

//go:embed avro/*.avsc eventline.yaml
var files embed.FS

var (
	once    sync.Once
	catalog *schemas.Catalog
	pipe    []byte
)

func load() {
	var err error
	if catalog, err = schemas.LoadCatalog(files, "avro"); err != nil {
		panic("events: embedded schemas do not load (the package's tests catch this): " + err.Error())
	}
	if pipe, err = files.ReadFile("eventline.yaml"); err != nil {
		panic(err)
	}
}

// Catalog returns the demo's schemas, exactly as the .avsc files hold them.
func Catalog() *schemas.Catalog {
	once.Do(load)
	return catalog
}

// Pipeline returns a fresh copy of the demo's eventline.yaml, parsed.
func Pipeline() *pipeline.Pipeline {
	once.Do(load)
	p, err := pipeline.Parse(pipe)
	if err != nil {
		panic("events: embedded eventline.yaml does not parse (the package's tests catch this): " + err.Error())
	}
	return p
}

// All returns a zero value of every generated event type.
func All() []schemas.Event {
	out := make([]schemas.Event, 0, len(constructors))
	for _, info := range Catalog().All() {
		if c, ok := constructors[info.Name]; ok {
			out = append(out, c())
		}
	}
	return out
}
