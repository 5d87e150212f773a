package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where the CLI looks for the pipeline file.
const DefaultPath = "eventline.yaml"

// Subject naming strategies (Confluent's names in parentheses).
const (
	TopicRecordName = "topic_record" // <topic>-<record full name> (TopicRecordNameStrategy), the default
	TopicName       = "topic"        // <topic>-value (TopicNameStrategy)
	RecordName      = "record"       // <record full name> (RecordNameStrategy)
)

// Pipeline is the parsed eventline.yaml.
type Pipeline struct {
	Schemas   Schemas            `yaml:"schemas"`
	Topics    []Topic            `yaml:"topics"`
	Subjects  map[string]Subject `yaml:"subjects"`
	Consumers Consumers          `yaml:"consumers"`

	// Dir is the directory of the file Load or LoadFS read (Schemas.Dir is
	// relative to it); empty after Parse, which means the working
	// directory.
	Dir string `yaml:"-"`
	// inFS: LoadFS read the file, so Dir and SchemaDir are paths of its
	// fs.FS (slash-separated, never absolute).
	inFS bool
}

// DefaultRetryDelays are the retry topics' delays when the file sets none.
var DefaultRetryDelays = []time.Duration{time.Second, 10 * time.Second, time.Minute}

// Schemas configures where schemas live and how subjects are named.
type Schemas struct {
	// Dir holds the .avsc files, relative to the pipeline file. Default
	// "schemas/avro".
	Dir string `yaml:"dir"`
	// Shared optionally names a second directory of .avsc files, relative
	// to the pipeline file: named types (Money, Address, ...) that events
	// use by name and that are not events themselves. Types may equally
	// live in Dir. Each is registered under the subject of its full name
	// and referenced from the events that use it.
	Shared string `yaml:"shared"`
	// SubjectStrategy: topic_record (default), topic or record.
	SubjectStrategy string `yaml:"subject_strategy"`
	// Compatibility is the level of every subject without its own entry in
	// Subjects. Default BACKWARD (Confluent's default).
	Compatibility string `yaml:"compatibility"`
}

// Topic is one event topic.
type Topic struct {
	Name              string            `yaml:"name"`
	Partitions        int32             `yaml:"partitions"`         // default 6
	ReplicationFactor int16             `yaml:"replication_factor"` // default -1: the broker's default
	Configs           map[string]string `yaml:"configs"`
	// Events lists the Avro full names of the events routed to the topic.
	Events []string `yaml:"events"`
	// CloudEvents, when set, makes the relay publish the topic's events in
	// CloudEvents binary content mode (see CloudEvents). Nil: eventline's
	// headers only.
	CloudEvents *CloudEvents `yaml:"cloudevents"`
}

// CloudEventsBinary is the one CloudEvents content mode eventline writes:
// the value stays the Confluent-framed Avro record and the attributes go in
// ce_* headers (the CloudEvents Kafka protocol binding's binary content
// mode), so every existing reader of the topic is unaffected. Structured
// mode would replace the value with a CloudEvents envelope that no Avro
// deserializer reads; it is refused.
const CloudEventsBinary = "binary"

// CloudEvents is a topic's CloudEvents option:
//
//	topics:
//	  - name: orders.events
//	    events: [shop.orders.OrderPlaced]
//	    cloudevents:
//	      mode: binary                 # required; the only mode
//	      source: https://orders.example.com/  # optional
//
// The relay then writes, beside the eventline-* headers, ce_specversion
// (1.0), ce_id (the event id), ce_source (Source), ce_type (the event's
// Avro full name), ce_time (when the event was written), ce_subject (the
// aggregate id) and content-type application/avro; the key stays the
// aggregate id (the binding's partitionkey). The headers package names
// them.
type CloudEvents struct {
	// Mode is CloudEventsBinary. Required.
	Mode string `yaml:"mode"`
	// Source is the ce_source attribute of every event of the topic: a
	// non-empty URI-reference (RFC 3986). Default
	// DefaultCloudEventsSource(topic), "urn:eventline:topic:<topic>".
	// CloudEvents consumers take source + id as the identity of an event,
	// so a source must not change while the topic has events: a changed
	// source makes a republished event (the relay publishes at least once)
	// look new to them. The topic name is the stable default; set Source
	// to the producing service's URI when consumers route by source.
	Source string `yaml:"source"`

	// sourceGiven: the file set source, even to "", which is refused
	// rather than silently replaced by the default.
	sourceGiven bool
}

// DefaultCloudEventsSource is the source of a topic's CloudEvents when
// cloudevents.source is not set: "urn:eventline:topic:" and the topic's
// name (an absolute URI, as the CloudEvents spec recommends, and as stable
// as the topic itself).
func DefaultCloudEventsSource(topic string) string { return "urn:eventline:topic:" + topic }

// UnmarshalYAML reads a cloudevents block, refusing unknown keys (the
// decoder's KnownFields does not reach a custom unmarshaller) and noting
// an explicit empty source.
func (c *CloudEvents) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; k != "mode" && k != "source" {
				return fmt.Errorf("line %d: field %s not found in cloudevents (want mode, source)", n.Content[i].Line, k)
			}
		}
	}
	var raw struct {
		Mode   string  `yaml:"mode"`
		Source *string `yaml:"source"`
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	*c = CloudEvents{Mode: raw.Mode}
	if raw.Source != nil {
		c.Source, c.sourceGiven = *raw.Source, true
	}
	return nil
}

// Subject overrides settings of one subject.
type Subject struct {
	Compatibility string `yaml:"compatibility"`
}

// Consumers holds consumer-group defaults.
type Consumers struct {
	// RetryDelays is the delay of each retry topic. Default 1s, 10s, 1m.
	RetryDelays []time.Duration `yaml:"retry_delays"`
}

// Load reads and validates the pipeline file at path.
func Load(path string) (*Pipeline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("error reading pipeline file: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Dir = filepath.Dir(path)
	return p, nil
}

// LoadFS reads and validates the pipeline file name from fsys, typically
// an embed.FS holding eventline.yaml and the schema files next to a
// service's code. SchemaDir is then the schema directory's path in fsys,
// for schemas.LoadCatalog:
//
//	//go:embed eventline.yaml schemas/*.avsc
//	var files embed.FS
//
//	pipe, err := pipeline.LoadFS(files, "eventline.yaml")
//	cat, err := schemas.LoadCatalog(files, pipe.SchemaDirs()...)
func LoadFS(fsys fs.FS, name string) (*Pipeline, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("error reading pipeline file: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.Dir, p.inFS = path.Dir(name), true
	return p, nil
}

// Parse parses and validates a pipeline file's contents. Unknown keys are
// errors: a misspelt key silently ignored would weaken a CI check.
func Parse(b []byte) (*Pipeline, error) {
	var p Pipeline
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file is all defaults (the decoder reports io.EOF).
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	p.ApplyDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// ApplyDefaults fills the zero fields of a Pipeline built in code (Parse
// and Load call it): schemas dir "schemas/avro", subject strategy
// topic_record, compatibility BACKWARD, 6 partitions and the broker's
// replication factor per topic, DefaultCloudEventsSource for a
// cloudevents block without a source, DefaultRetryDelays.
func (p *Pipeline) ApplyDefaults() {
	if p.Schemas.Dir == "" {
		p.Schemas.Dir = "schemas/avro"
	}
	if p.Schemas.SubjectStrategy == "" {
		p.Schemas.SubjectStrategy = TopicRecordName
	}
	if p.Schemas.Compatibility == "" {
		p.Schemas.Compatibility = "BACKWARD"
	}
	p.Schemas.Compatibility = strings.ToUpper(p.Schemas.Compatibility)
	for i := range p.Topics {
		if p.Topics[i].Partitions == 0 {
			p.Topics[i].Partitions = 6
		}
		if p.Topics[i].ReplicationFactor == 0 {
			p.Topics[i].ReplicationFactor = -1
		}
		if ce := p.Topics[i].CloudEvents; ce != nil && ce.Source == "" && !ce.sourceGiven {
			ce.Source = DefaultCloudEventsSource(p.Topics[i].Name)
		}
	}
	for k, s := range p.Subjects {
		s.Compatibility = strings.ToUpper(s.Compatibility)
		p.Subjects[k] = s
	}
	if len(p.Consumers.RetryDelays) == 0 {
		p.Consumers.RetryDelays = slices.Clone(DefaultRetryDelays)
	}
}

// Levels are the compatibility levels a subject may have.
var Levels = []string{"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}

// ValidLevel reports whether l (upper case) is one of Levels.
func ValidLevel(l string) bool { return slices.Contains(Levels, l) }

// Validate reports every problem of p at once (Parse and Load call it):
// unknown strategy or level, unnamed, misnamed or duplicate topics, bad
// partition or replication settings, a cloudevents block with a mode other
// than binary or a source that is not a non-empty URI-reference,
// non-positive retry delays.
func (p *Pipeline) Validate() error {
	var errs []error
	switch p.Schemas.SubjectStrategy {
	case TopicRecordName, TopicName, RecordName:
	default:
		errs = append(errs, fmt.Errorf("schemas.subject_strategy %q: want topic_record, topic or record", p.Schemas.SubjectStrategy))
	}
	if !ValidLevel(p.Schemas.Compatibility) {
		errs = append(errs, fmt.Errorf("schemas.compatibility %q: want one of %s", p.Schemas.Compatibility, strings.Join(Levels, ", ")))
	}
	seen := map[string]bool{}
	for i, t := range p.Topics {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("topics[%d]: name is required", i))
		} else if err := validTopicName(t.Name); err != nil {
			errs = append(errs, fmt.Errorf("topics[%d]: %w", i, err))
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("topics[%d]: topic %q listed twice", i, t.Name))
		}
		seen[t.Name] = true
		if t.Partitions < 1 {
			errs = append(errs, fmt.Errorf("topic %q: partitions must be at least 1", t.Name))
		}
		if t.ReplicationFactor < -1 || t.ReplicationFactor == 0 {
			errs = append(errs, fmt.Errorf("topic %q: replication_factor must be -1 (broker default) or at least 1", t.Name))
		}
		if t.CloudEvents != nil {
			errs = append(errs, t.CloudEvents.validate(t.Name)...)
		}
		if p.Schemas.SubjectStrategy == TopicName && len(t.Events) > 1 {
			errs = append(errs, fmt.Errorf("topic %q carries %d event types, which subject_strategy topic (one schema per topic) cannot name apart; use topic_record", t.Name, len(t.Events)))
		}
	}
	for s, sub := range p.Subjects {
		if !ValidLevel(sub.Compatibility) {
			errs = append(errs, fmt.Errorf("subjects[%s].compatibility %q: want one of %s", s, sub.Compatibility, strings.Join(Levels, ", ")))
		}
	}
	for i, d := range p.Consumers.RetryDelays {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("consumers.retry_delays[%d]: must be positive", i))
		}
	}
	return errors.Join(errs...)
}

// maxSourceLen bounds cloudevents.source: it is written in a header of
// every record of the topic.
const maxSourceLen = 1024

func (c *CloudEvents) validate(topic string) []error {
	var errs []error
	switch c.Mode {
	case CloudEventsBinary:
	case "":
		errs = append(errs, fmt.Errorf("topic %q: cloudevents.mode is required: want %s", topic, CloudEventsBinary))
	default:
		errs = append(errs, fmt.Errorf("topic %q: cloudevents.mode %q: want %s (structured mode is not supported: it would replace the Avro value every eventline consumer reads)", topic, c.Mode, CloudEventsBinary))
	}
	switch {
	case c.Source == "":
		errs = append(errs, fmt.Errorf("topic %q: cloudevents.source is empty: CloudEvents requires a non-empty URI-reference; remove the key for the default %s", topic, DefaultCloudEventsSource(topic)))
	case len(c.Source) > maxSourceLen:
		errs = append(errs, fmt.Errorf("topic %q: cloudevents.source of %d bytes: at most %d", topic, len(c.Source), maxSourceLen))
	default:
		if err := validURIReference(c.Source); err != nil {
			errs = append(errs, fmt.Errorf("topic %q: cloudevents.source %q is not a URI-reference (RFC 3986): %w", topic, c.Source, err))
		}
	}
	return errs
}

// validURIReference checks s against RFC 3986's URI-reference: only its
// characters (unreserved, reserved, and '%' followed by two hex digits),
// then the structure as net/url reads it. net/url alone is more lenient
// (it takes spaces and other characters a URI may not hold), and no
// library of the module's checks the RFC's grammar, hence the loop.
func validURIReference(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return errors.New("'%' not followed by two hex digits")
			}
		default:
			return fmt.Errorf("character %q is not allowed in a URI (percent-encode it)", c)
		}
	}
	if _, err := url.Parse(s); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// validTopicName applies Kafka's rule for topic names (the broker refuses
// others with INVALID_TOPIC_EXCEPTION, later and less clearly): 1 to 249
// characters of ASCII letters, digits, '.', '_' and '-', and not "." or "..".
func validTopicName(name string) error {
	if len(name) > 249 {
		return fmt.Errorf("topic name of %d characters: Kafka allows at most 249", len(name))
	}
	if name == "." || name == ".." {
		return fmt.Errorf("topic name %q is not allowed by Kafka", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q: Kafka allows only ASCII letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// SubjectFor returns the subject under which event is registered when it
// is written to topic.
func (p *Pipeline) SubjectFor(topic, event string) string {
	switch p.Schemas.SubjectStrategy {
	case TopicName:
		return topic + "-value"
	case RecordName:
		return event
	default:
		return topic + "-" + event
	}
}

// SubjectsFor returns the subjects under which the event with Avro full
// name event is registered: one per topic that carries it. An event routed
// to no topic has none.
func (p *Pipeline) SubjectsFor(event string) []string {
	var out []string
	for _, t := range p.Topics {
		for _, e := range t.Events {
			if e != event {
				continue
			}
			out = append(out, p.SubjectFor(t.Name, event))
		}
	}
	sort.Strings(out)
	if p.Schemas.SubjectStrategy == RecordName && len(out) > 1 {
		out = out[:1] // one subject whatever the number of topics
	}
	return out
}

// Level returns the compatibility level of subject.
func (p *Pipeline) Level(subject string) string {
	if s, ok := p.Subjects[subject]; ok && s.Compatibility != "" {
		return s.Compatibility
	}
	return p.Schemas.Compatibility
}

// TopicFor returns the topic that carries event (the first listed).
func (p *Pipeline) TopicFor(event string) (Topic, bool) {
	for _, t := range p.Topics {
		for _, e := range t.Events {
			if e == event {
				return t, true
			}
		}
	}
	return Topic{}, false
}

// SchemaDir is the directory of the .avsc files: Schemas.Dir, relative to
// the pipeline file's directory unless absolute (after LoadFS, a path in
// its fs.FS).
func (p *Pipeline) SchemaDir() string { return p.dirOf(p.Schemas.Dir) }

// dirOf resolves a directory named in the file: relative to the file's
// directory unless absolute; after LoadFS, a path in its fs.FS.
func (p *Pipeline) dirOf(dir string) string {
	if p.inFS {
		return path.Join(p.Dir, dir)
	}
	if filepath.IsAbs(dir) || p.Dir == "" {
		return dir
	}
	return filepath.Join(p.Dir, dir)
}

// SchemaDirs is SchemaDir followed by the shared types' directory when
// Schemas.Shared is set: the directories schemas.LoadCatalog and
// LoadCatalogDir take.
func (p *Pipeline) SchemaDirs() []string {
	dirs := []string{p.SchemaDir()}
	if p.Schemas.Shared != "" {
		dirs = append(dirs, p.dirOf(p.Schemas.Shared))
	}
	return dirs
}

// Events returns the Avro full names of every routed event, sorted, each
// once.
func (p *Pipeline) Events() []string {
	var out []string
	for _, t := range p.Topics {
		out = append(out, t.Events...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
