package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
// replication factor per topic, DefaultRetryDelays.
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
// partition or replication settings, non-positive retry delays.
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
