package registry

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/eventline/eventline/schemas/compat"
)

// reference is a schema reference (Confluent's {name, subject, version}).
type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// storedSchema is a schema by global id.
type storedSchema struct {
	ID         int
	Text       string
	References []reference
	key        string // identity: normalized text + references
}

type version struct {
	Version int
	ID      int
	Deleted bool // soft-deleted
}

type subjectState struct {
	versions []*version // ascending; hard-deleted ones removed
}

func (s *subjectState) live() []*version {
	var out []*version
	for _, v := range s.versions {
		if !v.Deleted {
			out = append(out, v)
		}
	}
	return out
}

func (s *subjectState) find(n int) *version {
	for _, v := range s.versions {
		if v.Version == n {
			return v
		}
	}
	return nil
}

// state is everything the registry knows; guarded by Registry.mu.
type state struct {
	schemas  map[int]*storedSchema
	byKey    map[string]int
	subjects map[string]*subjectState
	compat   map[string]string // "" key: global
	mode     map[string]string // "" key: global
	maxID    int
	maxVer   map[string]int // highest version ever used per subject (versions are not reused)
}

func newState() *state {
	return &state{
		schemas: map[int]*storedSchema{}, byKey: map[string]int{}, subjects: map[string]*subjectState{},
		compat: map[string]string{}, mode: map[string]string{}, maxVer: map[string]int{},
	}
}

// Records of the log. Keys:
//
//	schema/<id>                    {"id", "schema", "references"}: a schema by id (never deleted)
//	version/<subject>/<version>    {"id", "deleted"}; nil value: hard-deleted
//	config/<subject>               {"compatibility"}; nil: removed ("" subject: global)
//	mode/<subject>                 {"mode"}; nil: removed
//
// Every record carries the full state of its key, so replaying the
// compacted log (only the last record per key) rebuilds the same state.
type schemaRecord struct {
	ID         int         `json:"id"`
	Schema     string      `json:"schema"`
	References []reference `json:"references,omitempty"`
}

type versionRecord struct {
	ID      int  `json:"id"`
	Deleted bool `json:"deleted"`
}

type configRecord struct {
	Compatibility string `json:"compatibility"`
}

type modeRecord struct {
	Mode string `json:"mode"`
}

func (st *state) apply(key string, value []byte) error {
	kind, rest, _ := strings.Cut(key, "/")
	switch kind {
	case "schema":
		var r schemaRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("record %s: %w", key, err)
		}
		st.putSchema(&storedSchema{ID: r.ID, Text: r.Schema, References: r.References, key: identity(r.Schema, r.References)})
	case "version":
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return fmt.Errorf("record %s: malformed key", key)
		}
		subj := rest[:i]
		n, err := strconv.Atoi(rest[i+1:])
		if err != nil {
			return fmt.Errorf("record %s: %w", key, err)
		}
		if value == nil {
			st.removeVersion(subj, n)
			return nil
		}
		var r versionRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("record %s: %w", key, err)
		}
		st.putVersion(subj, &version{Version: n, ID: r.ID, Deleted: r.Deleted})
	case "config":
		// A level the registry cannot apply would fail every later
		// registration in the subject with a 500.
		return applySetting(st.compat, key, rest, value, func(r configRecord) (string, error) {
			level, err := compat.ParseLevel(r.Compatibility)
			return string(level), err
		})
	case "mode":
		return applySetting(st.mode, key, rest, value, func(r modeRecord) (string, error) {
			if !slices.Contains(modes, r.Mode) {
				return "", fmt.Errorf("unknown mode %q", abbreviate(r.Mode))
			}
			return r.Mode, nil
		})
	default:
		return fmt.Errorf("record %s: unknown kind", key)
	}
	return nil
}

// applySetting replays the record key of a per-subject setting (m: the
// compatibility levels or the modes): a tombstone (nil value) removes
// subject's value; otherwise the record R, checked by valueOf, sets it.
func applySetting[R any](m map[string]string, key, subject string, value []byte, valueOf func(R) (string, error)) error {
	if value == nil {
		delete(m, subject)
		return nil
	}
	var r R
	if err := json.Unmarshal(value, &r); err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	v, err := valueOf(r)
	if err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	m[subject] = v
	return nil
}

// dropDangling removes, after a replay, the versions no handler could
// serve: a version numbered below 1, or naming a schema id the log does not
// hold (our own log writes a schema before any version of it, so only a
// foreign or damaged log has one; serving it would dereference a missing
// schema). It returns a description of each for the log.
func (st *state) dropDangling() []string {
	var dropped []string
	for subj, ss := range st.subjects {
		for _, v := range append([]*version(nil), ss.versions...) {
			if _, ok := st.schemas[v.ID]; ok && v.Version >= 1 {
				continue
			}
			dropped = append(dropped, fmt.Sprintf("version %d of subject %q names schema id %d", v.Version, abbreviate(subj), v.ID))
			st.removeVersion(subj, v.Version)
		}
	}
	sort.Strings(dropped)
	return dropped
}

// dropUnparsable removes, after a replay, the schemas that do not parse
// (with their references resolved) and the versions naming them, logging
// each: the log is a Kafka topic, so anyone who may write to it could put
// `{not avro` there, and a served id must be one the API would have
// accepted. A schema referencing one dropped is dropped in the next round.
// Their ids stay used: records may carry them.
func (r *Registry) dropUnparsable() {
	for {
		var bad []int
		for id, s := range r.st.schemas {
			if _, err := r.parse(s.Text, s.References); err != nil {
				bad = append(bad, id)
				r.log.Warn("registry: skipping a stored schema that does not parse", "id", id, "err", err)
			}
		}
		if len(bad) == 0 {
			return
		}
		for _, id := range bad {
			delete(r.st.schemas, id)
		}
		// Every identity leading to a dropped id, not only the last
		// text's: a log may hold two records for one id, and a stale
		// identity would register a version naming a missing schema.
		for key, id := range r.st.byKey {
			if r.st.schemas[id] == nil {
				delete(r.st.byKey, key)
			}
		}
		for _, d := range r.st.dropDangling() {
			r.log.Warn("registry: skipping a stored version whose schema does not parse", "version", d)
		}
	}
}

func (st *state) putSchema(s *storedSchema) {
	// A later record for the same id (a foreign or hostile writer; ours
	// never rewrites one) replaces its text: the old text's identity must
	// not lead to it any more.
	if old := st.schemas[s.ID]; old != nil && st.byKey[old.key] == s.ID {
		delete(st.byKey, old.key)
	}
	st.schemas[s.ID] = s
	st.byKey[s.key] = s.ID
	if s.ID > st.maxID {
		st.maxID = s.ID
	}
}

func (st *state) putVersion(subj string, v *version) {
	ss := st.subjects[subj]
	if ss == nil {
		ss = &subjectState{}
		st.subjects[subj] = ss
	}
	if old := ss.find(v.Version); old != nil {
		*old = *v
	} else {
		ss.versions = append(ss.versions, v)
		sort.Slice(ss.versions, func(i, j int) bool { return ss.versions[i].Version < ss.versions[j].Version })
	}
	if v.Version > st.maxVer[subj] {
		st.maxVer[subj] = v.Version
	}
}

func (st *state) removeVersion(subj string, n int) {
	ss := st.subjects[subj]
	if ss == nil {
		return
	}
	for i, v := range ss.versions {
		if v.Version == n {
			ss.versions = append(ss.versions[:i], ss.versions[i+1:]...)
			break
		}
	}
	if len(ss.versions) == 0 {
		delete(st.subjects, subj)
	}
}

// identity is what makes two registrations "the same schema": the JSON with
// insignificant whitespace and key order normalised, plus the references.
// (Avro's Parsing Canonical Form would also drop defaults and aliases, which
// change compatibility, so it is not used here.)
func identity(text string, refs []reference) string {
	var v any
	norm := text
	if err := json.Unmarshal([]byte(text), &v); err == nil {
		if b, err := json.Marshal(v); err == nil { // map keys come out sorted
			norm = string(b)
		}
	}
	rb, _ := json.Marshal(refs)
	return norm + "|" + string(rb)
}
