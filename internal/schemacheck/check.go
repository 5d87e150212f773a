// Package schemacheck is the engine of `eventline schemas check`: it compares
// the schema files of a working tree with their history (every version
// reachable from a git ref, renames followed) or with a live registry, at
// each subject's compatibility level from eventline.yaml, and reports every
// problem with its file, subject, level, version and location.
package schemacheck

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas"
	"github.com/eventline/eventline/schemas/compat"
)

// Finding kinds.
const (
	KindIncompatible = "incompatible" // the new schema breaks a version under the subject's level
	KindDeleted      = "deleted"      // a schema present in the baseline is gone
	KindInvalid      = "invalid"      // a current schema file does not parse
)

// Finding is one problem.
type Finding struct {
	Kind      string `json:"kind"`
	File      string `json:"file"` // relative to the repository root (or the config dir)
	Subject   string `json:"subject,omitempty"`
	Level     string `json:"level,omitempty"`
	Version   int    `json:"version,omitempty"` // 1-based among the subject's distinct historical versions
	Commit    string `json:"commit,omitempty"`
	Direction string `json:"direction,omitempty"` // backward: new reads old; forward: old reads new
	Location  string `json:"location,omitempty"`  // where in the schema, e.g. /fields/amount/type
	Message   string `json:"message"`
	Hint      string `json:"hint,omitempty"`
}

// Subject is one subject that was checked.
type Subject struct {
	File     string `json:"file"`
	Subject  string `json:"subject"`
	Level    string `json:"level"`
	Versions int    `json:"versions"` // baseline versions compared against
	New      bool   `json:"new"`      // no baseline: passes
	OK       bool   `json:"ok"`
}

// Report is the outcome of a check.
type Report struct {
	Against  string    `json:"against"`
	Subjects []Subject `json:"subjects"`
	Findings []Finding `json:"findings"`
	Notes    []string  `json:"notes,omitempty"` // things worth knowing that do not fail the check
}

// OK reports whether the check passed.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// Invalid reports whether some input could not be parsed (exit code 2).
func (r *Report) Invalid() bool {
	for _, f := range r.Findings {
		if f.Kind == KindInvalid {
			return true
		}
	}
	return false
}

// current is one schema file of the working tree.
type current struct {
	file   string // relative to the repository root
	abs    string
	text   string
	schema avro.Schema
	name   string // Avro full name
}

// Options of a check.
type Options struct {
	Pipeline *pipeline.Pipeline
	// Dir is the directory of eventline.yaml: the schema dir is relative to it.
	Dir string
}

func (o Options) schemaDir() string {
	return filepath.Join(o.Dir, filepath.FromSlash(o.Pipeline.Schemas.Dir))
}

// schemaDirs is schemaDir and, when eventline.yaml names one, the shared
// types' directory.
func (o Options) schemaDirs() []string {
	dirs := []string{o.schemaDir()}
	if o.Pipeline.Schemas.Shared != "" {
		dirs = append(dirs, filepath.Join(o.Dir, filepath.FromSlash(o.Pipeline.Schemas.Shared)))
	}
	return dirs
}

// catalog loads the working tree's schema files as the producer does.
func (o Options) catalog() (*schemas.Catalog, error) {
	return schemas.LoadCatalogDir(o.schemaDirs()...)
}

// loadCurrent parses the working tree's schema files. Unparsable files are
// reported as findings.
func loadCurrent(opts Options, root string, rep *Report) ([]current, error) {
	dir := opts.schemaDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("error reading schema dir: %w", err)
	}
	var out []current
	for _, e := range entries {
		if e.IsDir() || !isSchema(e.Name()) {
			continue
		}
		abs := filepath.Join(dir, e.Name())
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			rel = abs
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			return nil, err
		}
		s, err := compat.Parse(string(b))
		if err != nil {
			rep.Findings = append(rep.Findings, Finding{Kind: KindInvalid, File: filepath.ToSlash(rel), Message: "schema does not parse: " + err.Error()})
			continue
		}
		out = append(out, current{file: filepath.ToSlash(rel), abs: abs, text: string(b), schema: s, name: fullName(s)})
	}
	return out, nil
}

// loadWorkingTree is loadCurrent outside a git history: files are named
// from the repository's root when opts.Dir is in a git checkout, from
// opts.Dir otherwise.
func loadWorkingTree(ctx context.Context, opts Options, rep *Report) ([]current, error) {
	root := opts.Dir
	if r, err := repoRoot(ctx, opts.Dir); err == nil {
		root = r
	}
	return loadCurrent(opts, root, rep)
}

func fullName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

func (o Options) subjects(name string) []string {
	if s := o.Pipeline.SubjectsFor(name); len(s) > 0 {
		return s
	}
	// An event routed to no topic is still checked, under its record name.
	return []string{name}
}

// AgainstGit checks the working tree's schemas against every version of each
// schema file reachable from ref.
func AgainstGit(ctx context.Context, opts Options, ref string) (*Report, error) {
	root, err := repoRoot(ctx, opts.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := git(ctx, root, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return nil, fmt.Errorf("%w: %q is not a commit", ErrGit, ref)
	}
	dirRel, err := filepath.Rel(root, opts.schemaDir())
	if err != nil {
		return nil, err
	}
	dirRel = filepath.ToSlash(dirRel)
	rep := &Report{Against: "git:" + ref}
	cur, err := loadCurrent(opts, root, rep)
	if err != nil {
		return nil, err
	}
	lineages, err := gitHistory(ctx, root, ref, dirRel)
	if err != nil {
		return nil, err
	}
	renames, err := renamesSince(ctx, root, ref, dirRel)
	if err != nil {
		return nil, err
	}
	renamedFrom := map[string]string{}
	for from, to := range renames {
		renamedFrom[to] = from
	}
	// Keep the lineages that concern dir: alive there at ref, moved there
	// since, or defining a record one of dir's files defines now (other
	// directories' schemas are other teams' business).
	names := map[string]bool{}
	for _, c := range cur {
		names[c.name] = true
	}
	prefix := strings.TrimSuffix(dirRel, "/") + "/"
	under := func(p string) bool { return dirRel == "." || dirRel == "" || strings.HasPrefix(p, prefix) }
	for p, l := range lineages {
		if under(p) || under(renames[p]) || (len(l.Versions) > 0 && names[recordName(l.Versions[len(l.Versions)-1].Text)]) {
			continue
		}
		delete(lineages, p)
	}
	used := map[*Lineage]bool{}
	for _, c := range cur {
		lin := lineages[c.file]
		if lin == nil {
			lin = lineages[renamedFrom[c.file]]
		}
		if lin == nil {
			// A new file may still carry a record that lived in a file
			// git does not see as renamed (rewritten while moved).
			for _, l := range lineages {
				if !used[l] && len(l.Versions) > 0 && recordName(l.Versions[len(l.Versions)-1].Text) == c.name {
					lin = l
					break
				}
			}
		}
		if lin != nil {
			used[lin] = true
		}
		checkLineage(opts, rep, c, lin)
	}
	var gone []*Lineage
	for _, l := range lineages {
		if !used[l] {
			gone = append(gone, l)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].Path < gone[j].Path })
	for _, l := range gone {
		last := l.Versions[len(l.Versions)-1]
		name := recordName(last.Text)
		for _, subj := range opts.subjects(name) {
			rep.Findings = append(rep.Findings, Finding{
				Kind: KindDeleted, File: l.Path, Subject: subj, Level: opts.Pipeline.Level(subj),
				Commit: last.Commit, Version: len(l.Versions),
				Message: fmt.Sprintf("schema %s (%s) exists at %s but is gone: consumers of subject %s can no longer be served by new producers", name, l.Path, ref, subj),
				Hint:    "restore the file, or retire the subject deliberately (delete it in the registry) and remove it from eventline.yaml",
			})
		}
	}
	return rep, nil
}

func recordName(text string) string {
	s, err := compat.Parse(text)
	if err != nil {
		return ""
	}
	return fullName(s)
}

func checkLineage(opts Options, rep *Report, c current, lin *Lineage) {
	// Distinct versions, oldest first, as a registry would hold them:
	// re-registering an identical schema creates no version.
	var existing []avro.Schema
	var from []Version
	seen := map[[32]byte]bool{}
	if lin != nil {
		for _, v := range lin.Versions {
			s, err := compat.Parse(v.Text)
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s at %.12s does not parse and is skipped: %v", v.Path, v.Commit, err))
				continue
			}
			fp := s.Fingerprint()
			if seen[fp] {
				continue
			}
			seen[fp] = true
			existing = append(existing, s)
			from = append(from, v)
		}
	}
	for _, subj := range opts.subjects(c.name) {
		level := opts.Pipeline.Level(subj)
		sr := Subject{File: c.file, Subject: subj, Level: level, Versions: len(existing), New: len(existing) == 0, OK: true}
		if len(existing) > 0 {
			lvl, err := compat.ParseLevel(level)
			if err != nil { // config.validate already checked it
				rep.Findings = append(rep.Findings, Finding{Kind: KindInvalid, File: c.file, Subject: subj, Message: err.Error()})
				continue
			}
			res := compat.Check(lvl, c.schema, existing)
			for _, p := range res.Problems {
				v := from[p.Version-1]
				rep.Findings = append(rep.Findings, Finding{
					Kind: KindIncompatible, File: c.file, Subject: subj, Level: level,
					Version: p.Version, Commit: v.Commit, Direction: p.Direction,
					Location: p.Path, Message: p.Message, Hint: p.Hint,
				})
			}
			sr.OK = res.Compatible
		}
		rep.Subjects = append(rep.Subjects, sr)
	}
}

// AgainstRegistry checks the working tree's schemas with a live registry's
// compatibility endpoint (verbose where supported), under the levels the
// registry enforces; a level that differs from eventline.yaml is noted.
func AgainstRegistry(ctx context.Context, opts Options, cl *sr.Client, registryURL string) (*Report, error) {
	rep := &Report{Against: "registry " + registryURL}
	cur, err := loadWorkingTree(ctx, opts, rep)
	if err != nil {
		return nil, err
	}
	all, err := cl.Subjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("error listing the registry's subjects at %s: %w", registryURL, err)
	}
	inRegistry := map[string]bool{}
	for _, s := range all {
		inRegistry[s] = true
	}
	local := map[string]bool{}
	vctx := sr.WithParams(ctx, sr.Verbose)
	for _, c := range cur {
		for _, subj := range opts.subjects(c.name) {
			local[subj] = true
			want := opts.Pipeline.Level(subj)
			sub := Subject{File: c.file, Subject: subj, Level: want, OK: true}
			if !inRegistry[subj] {
				sub.New = true
				rep.Subjects = append(rep.Subjects, sub)
				continue
			}
			versions, err := cl.SubjectVersions(ctx, subj)
			if err != nil {
				return nil, fmt.Errorf("error reading versions of %s: %w", subj, err)
			}
			sub.Versions = len(versions)
			if lv := cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), subj); len(lv) == 1 && lv[0].Err == nil {
				if got := lv[0].Level.String(); got != want {
					rep.Notes = append(rep.Notes, fmt.Sprintf("subject %s: the registry enforces %s, eventline.yaml says %s (`eventline schemas register` sets it)", subj, got, want))
					sub.Level = got
				}
			}
			res, err := cl.CheckCompatibility(vctx, subj, -2, sr.Schema{Schema: c.text, Type: sr.TypeAvro})
			if err != nil {
				var re *sr.ResponseError
				if errors.As(err, &re) && (re.ErrorCode == 42201 || re.StatusCode == http.StatusUnprocessableEntity) {
					rep.Findings = append(rep.Findings, Finding{Kind: KindInvalid, File: c.file, Subject: subj, Message: "the registry rejects the schema: " + re.Message})
					continue
				}
				return nil, fmt.Errorf("error checking %s against the registry: %w", subj, err)
			}
			sub.OK = res.Is
			if !res.Is {
				msgs := res.Messages
				if len(msgs) == 0 {
					msgs = []string{"incompatible (the registry gave no reason; it may not support verbose=true)"}
				}
				for _, m := range msgs {
					rep.Findings = append(rep.Findings, Finding{Kind: KindIncompatible, File: c.file, Subject: subj, Level: sub.Level, Message: m})
				}
			}
			rep.Subjects = append(rep.Subjects, sub)
		}
	}
	// Subjects of our topics in the registry with no schema file any more.
	for _, s := range all {
		if local[s] || !ownedSubject(opts.Pipeline, s) {
			continue
		}
		rep.Findings = append(rep.Findings, Finding{
			Kind: KindDeleted, Subject: s, Level: opts.Pipeline.Level(s),
			Message: fmt.Sprintf("subject %s is registered but no schema file produces it any more", s),
			Hint:    "restore the schema file, or retire the subject deliberately in the registry",
		})
	}
	return rep, nil
}

// ownedSubject reports whether subject belongs to one of the pipeline's
// topics under its naming strategy.
func ownedSubject(p *pipeline.Pipeline, subject string) bool {
	for _, t := range p.Topics {
		switch p.Schemas.SubjectStrategy {
		case pipeline.TopicName:
			if subject == t.Name+"-value" {
				return true
			}
		case pipeline.RecordName:
			for _, e := range t.Events {
				if subject == e {
					return true
				}
			}
		default:
			if strings.HasPrefix(subject, t.Name+"-") {
				return true
			}
		}
	}
	return false
}
