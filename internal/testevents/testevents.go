// Package testevents is the event domain of eventline's own tests: a small
// helpdesk whose tickets are opened, assigned and closed, and whose agents
// book time on them. It is not the demo (examples/events): the framework's
// tests prove the framework on this catalogue, so that the demo's domain
// can change without touching them.
//
// Between them the five schemas (avro/*.avsc) hold the shapes the tests
// rely on: uuid strings and timestamp-millis longs, int, long, boolean and
// string fields, an array of a record that two events use by reference
// (helpdesk.shared.Attachment, defined once in shared/ and registered under
// its own subject), enums with a default symbol, an optional
// (null-first union) field, and two topics in eventline.yaml routing three
// and two types. TicketOpened, the event most tests send, starts with two
// strings and an array: TestDecodeErrors and the FuzzDecode corpus in
// schemas/testdata build bodies of that layout by hand.
//
// testevents_gen.go holds the Go types avrogen generates from the schemas
// (structs only: each type's Schema, which makes it a schemas.Event, is the
// catalogue's parsed schema, below); `make check-generate` fails when it is
// stale.
package testevents

//go:generate sh -c "go tool avrogen -pkg testevents -o testevents_gen.go -tags json:snake -strict-types -enums shared/*.avsc avro/*.avsc && sed -i '1s/$/\\n/' testevents_gen.go"

import (
	"embed"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
)

//go:embed eventline.yaml avro/*.avsc shared/*.avsc
var files embed.FS

// catalog is loaded once: every test of a package shares it.
var catalog = sync.OnceValue(func() *schemas.Catalog {
	c, err := schemas.LoadCatalog(files, Pipeline().SchemaDirs()...)
	if err != nil {
		panic("testevents: the embedded schemas are invalid: " + err.Error())
	}
	return c
})

// Catalog returns the helpdesk schemas as their files hold them.
func Catalog() *schemas.Catalog { return catalog() }

// Pipeline parses the embedded eventline.yaml again on each call: a test
// may change what it gets.
func Pipeline() *pipeline.Pipeline {
	p, err := pipeline.LoadFS(files, "eventline.yaml")
	if err != nil {
		panic("testevents: the embedded pipeline file is invalid: " + err.Error())
	}
	return p
}

// schemaOf is the catalogue's parsed schema of the event named name.
func schemaOf(name string) avro.Schema {
	info, ok := Catalog().Lookup(name)
	if !ok {
		panic("testevents: no schema " + name)
	}
	return info.Schema
}

// Schema makes each generated type a schemas.Event.
func (*TicketOpened) Schema() avro.Schema   { return schemaOf("helpdesk.tickets.TicketOpened") }
func (*TicketAssigned) Schema() avro.Schema { return schemaOf("helpdesk.tickets.TicketAssigned") }
func (*TicketClosed) Schema() avro.Schema   { return schemaOf("helpdesk.tickets.TicketClosed") }
func (*WorkLogged) Schema() avro.Schema     { return schemaOf("helpdesk.worklog.WorkLogged") }
func (*DeadlineMissed) Schema() avro.Schema { return schemaOf("helpdesk.worklog.DeadlineMissed") }

// generated maps an event's Avro full name to a new zero value of its Go
// type. avrogen does not write it: TestGeneratedTypes fails when a schema
// has no entry.
var generated = map[string]func() schemas.Event{
	"helpdesk.tickets.TicketOpened":   func() schemas.Event { return new(TicketOpened) },
	"helpdesk.tickets.TicketAssigned": func() schemas.Event { return new(TicketAssigned) },
	"helpdesk.tickets.TicketClosed":   func() schemas.Event { return new(TicketClosed) },
	"helpdesk.worklog.WorkLogged":     func() schemas.Event { return new(WorkLogged) },
	"helpdesk.worklog.DeadlineMissed": func() schemas.Event { return new(DeadlineMissed) },
}

// New returns a zero value of the Go type of the event named name (its
// Avro full name), and false when there is none.
func New(name string) (schemas.Event, bool) {
	mk, ok := generated[name]
	if !ok {
		return nil, false
	}
	return mk(), true
}

// All returns a zero value of each event's Go type, in catalogue order.
func All() []schemas.Event {
	var out []schemas.Event
	for _, info := range Catalog().All() {
		if ev, ok := New(info.Name); ok {
			out = append(out, ev)
		}
	}
	return out
}
