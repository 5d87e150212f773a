package pipeline_test

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/eventline/eventline/pipeline"
)

func TestProjectPipelineFile(t *testing.T) {
	p, err := pipeline.Load("../internal/testevents/eventline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.SchemaDir() != "../internal/testevents/avro" {
		t.Errorf("schema dir %q, want it relative to the file", p.SchemaDir())
	}
	if got := p.SubjectsFor("helpdesk.tickets.TicketOpened"); len(got) != 1 || got[0] != "tickets.events-helpdesk.tickets.TicketOpened" {
		t.Errorf("subjects of TicketOpened: %v", got)
	}
	if l := p.Level("tickets.events-helpdesk.tickets.TicketOpened"); l != "BACKWARD_TRANSITIVE" {
		t.Errorf("level %s", l)
	}
}

func TestDefaults(t *testing.T) {
	p, err := pipeline.Parse([]byte(""))
	if err != nil {
		t.Fatal(err)
	}
	if p.Schemas.Dir != "schemas/avro" || p.Schemas.Compatibility != "BACKWARD" || p.Schemas.SubjectStrategy != pipeline.TopicRecordName {
		t.Errorf("defaults: %+v", p.Schemas)
	}
	if len(p.Consumers.RetryDelays) != 3 || p.Consumers.RetryDelays[2] != time.Minute {
		t.Errorf("retry delays: %v", p.Consumers.RetryDelays)
	}
}

func TestStrategiesAndOverrides(t *testing.T) {
	p, err := pipeline.Parse([]byte(`
schemas: {subject_strategy: record, compatibility: full}
topics:
  - {name: a, events: [x.E]}
  - {name: b, events: [x.E]}
subjects:
  x.E: {compatibility: none}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.SubjectsFor("x.E"); len(got) != 1 || got[0] != "x.E" {
		t.Errorf("record strategy: %v", got)
	}
	if p.Level("x.E") != "NONE" || p.Level("other") != "FULL" {
		t.Errorf("levels: %s %s", p.Level("x.E"), p.Level("other"))
	}
	if p.Topics[0].Partitions != 6 || p.Topics[0].ReplicationFactor != -1 {
		t.Errorf("topic defaults: %+v", p.Topics[0])
	}
}

func TestInvalid(t *testing.T) {
	for in, want := range map[string]string{
		"schemas: {compatibility: SIDEWAYS}":                                      "schemas.compatibility",
		"schemas: {subject_strategy: nope}":                                       "subject_strategy",
		"topics: [{name: a, partitions: -1}]":                                     "partitions must be at least 1",
		"topics: [{name: a}, {name: a}]":                                          "listed twice",
		"schemas: {subject_strategy: topic}\ntopics: [{name: a, events: [x, y]}]": "cannot name apart",
		"subjects: {s: {compatibility: weird}}":                                   "subjects[s]",
		"topicz: []":                                                              "field topicz not found",
		"consumers: {retry_delays: [-1s]}":                                        "must be positive",
	} {
		_, err := pipeline.Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", in, err, want)
		}
	}
}

// Topic names Kafka would refuse are refused when the file is read, naming
// the rule.
func TestTopicNamesKafkaRefuses(t *testing.T) {
	for _, name := range []string{"bad name", "orders/events", "..", strings.Repeat("t", 250), "ordérs"} {
		if _, err := pipeline.Parse([]byte("topics:\n  - name: '" + name + "'\n")); err == nil || !strings.Contains(err.Error(), "Kafka") {
			t.Errorf("topic %q: %v", name, err)
		}
	}
	if _, err := pipeline.Parse([]byte("topics:\n  - name: orders.events_v2-eu\n")); err != nil {
		t.Errorf("a legal name refused: %v", err)
	}
}

// A pipeline read from an fs.FS (a service's embed.FS) names its schema
// directory as a path of that FS, so the catalogue is loaded from what the
// file says, not from a second, repeated path.
func TestLoadFSSchemaDir(t *testing.T) {
	fsys := fstest.MapFS{
		"svc/eventline.yaml": {Data: []byte("schemas: {dir: avro}\ntopics: [{name: t, events: [a.B]}]\n")},
		"top.yaml":           {Data: []byte("topics: [{name: t, events: [a.B]}]\n")},
		"bad.yaml":           {Data: []byte("topics: [{name: t, evnts: [a.B]}]\n")},
	}
	p, err := pipeline.LoadFS(fsys, "svc/eventline.yaml")
	if err != nil || p.SchemaDir() != "svc/avro" {
		t.Fatalf("LoadFS: %v, SchemaDir %q; want svc/avro", err, p.SchemaDir())
	}
	if got := strings.Join(p.SchemaDirs(), ","); got != "svc/avro" {
		t.Errorf("SchemaDirs %s, want svc/avro alone (no shared directory)", got)
	}
	fsys["svc/shared.yaml"] = &fstest.MapFile{Data: []byte("schemas: {dir: avro, shared: common}\ntopics: [{name: t, events: [a.B]}]\n")}
	if p, err := pipeline.LoadFS(fsys, "svc/shared.yaml"); err != nil || strings.Join(p.SchemaDirs(), ",") != "svc/avro,svc/common" {
		t.Fatalf("schemas.shared: %v, SchemaDirs %v; want svc/avro and svc/common", err, p.SchemaDirs())
	}
	if p, err := pipeline.LoadFS(fsys, "top.yaml"); err != nil || p.SchemaDir() != "schemas/avro" {
		t.Fatalf("LoadFS at the root: %v, SchemaDir %q; want the default schemas/avro", err, p.SchemaDir())
	}
	if _, err := pipeline.LoadFS(fsys, "bad.yaml"); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("a bad file: %v; want an error naming it", err)
	}
	if _, err := pipeline.LoadFS(fsys, "none.yaml"); err == nil {
		t.Fatal("a missing file: no error")
	}
}

// A topic's cloudevents block: binary mode, the default source derived
// from the topic's name, an explicit source kept; everything else refused
// with an error naming the topic and the key.
func TestCloudEventsOption(t *testing.T) {
	p, err := pipeline.Parse([]byte(`
topics:
  - {name: plain, events: [x.E]}
  - {name: orders.events, events: [x.E], cloudevents: {mode: binary}}
  - name: shipments
    events: [x.F]
    cloudevents: {mode: binary, source: "https://shipping.example.com/dispatch?region=eu%2D1"}
  - {name: rel, events: [x.G], cloudevents: {mode: binary, source: /orders}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Topics[0].CloudEvents != nil {
		t.Errorf("a topic without the block: %+v", p.Topics[0].CloudEvents)
	}
	if ce := p.Topics[1].CloudEvents; ce == nil || ce.Mode != pipeline.CloudEventsBinary || ce.Source != "urn:eventline:topic:orders.events" {
		t.Errorf("default source: %+v", ce)
	}
	if ce := p.Topics[2].CloudEvents; ce == nil || ce.Source != "https://shipping.example.com/dispatch?region=eu%2D1" {
		t.Errorf("explicit source: %+v", ce)
	}
	if ce := p.Topics[3].CloudEvents; ce == nil || ce.Source != "/orders" {
		t.Errorf("relative source: %+v", ce)
	}

	for in, want := range map[string]string{
		"{mode: structured}":             `cloudevents.mode "structured": want binary`,
		"{mode: Binary}":                 `cloudevents.mode "Binary": want binary`,
		"{source: /x}":                   "cloudevents.mode is required",
		`{mode: binary, source: ""}`:     "cloudevents.source is empty",
		"{mode: binary, source: 'a b'}":  "not a URI-reference",
		"{mode: binary, source: '/%zz'}": "not a URI-reference",
		"{mode: binary, source: 'é'}":    "not a URI-reference",
		"{mode: binary, source: '1a:b'}": "not a URI-reference",
		"{mode: binary, sorce: /x}":      "field sorce not found in cloudevents",
		"binary":                         "cannot unmarshal",
		"{mode: binary, source: '/" + strings.Repeat("s", 1100) + "'}": "at most 1024",
	} {
		_, err := pipeline.Parse([]byte("topics:\n  - {name: t1, events: [x.E], cloudevents: " + in + "}\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("cloudevents %s: got %v, want an error containing %q", in, err, want)
		} else if !strings.Contains(err.Error(), "cannot unmarshal") && !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), `topic "t1"`) {
			t.Errorf("cloudevents %s: %v does not name the topic", in, err)
		}
	}

	// Built in code: ApplyDefaults fills the source, Validate checks the mode.
	q := &pipeline.Pipeline{Topics: []pipeline.Topic{{Name: "t", CloudEvents: &pipeline.CloudEvents{Mode: "binary"}}}}
	q.ApplyDefaults()
	if err := q.Validate(); err != nil || q.Topics[0].CloudEvents.Source != pipeline.DefaultCloudEventsSource("t") {
		t.Errorf("in code: %v, %+v", err, q.Topics[0].CloudEvents)
	}
	q.Topics[0].CloudEvents.Mode = "structured"
	if err := q.Validate(); err == nil {
		t.Error("in code: structured mode accepted")
	}
}
