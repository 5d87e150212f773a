// Package schemacheck is the engine of `eventline schemas check`: it compares
// the schema files of a working tree with their history (every version
// reachable from a git ref, renames followed) or with a live registry, at
// each subject's compatibility level from eventline.yaml, and reports every
// problem with its file, subject, level, version and location.
//
// Files may use named types other files of the schema or shared directory
// define (schema references). Each is parsed with the files it uses; a
// historical version with those files as they were at its commit, and at
// each later commit that changed them, since a registry receives a new
// version whenever a shared type changes. A shared type is also checked
// under its own subject, its full name. A finding whose location passes
// through a shared type names it (Finding.Via) and cuts the location there
// (Finding.RefPath: "/fields/amount/type -> acme.shared.Money /fields/note").
package schemacheck

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
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
	// Via lists the shared types (full names, outermost first) that
	// Location passes through: the files, other than File, where the
	// change that breaks this subject was made.
	Via []string `json:"via,omitempty"`
	// RefPath is Location cut where it enters each of Via, e.g.
	// "/fields/amount/type -> acme.shared.Money /fields/currency"; set
	// only with Via.
	RefPath string `json:"ref_path,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
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
	// refs are the full names of the shared types it uses, directly or
	// not (nil when self-contained).
	refs map[string]bool
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

// loadCurrent parses the working tree's schema files: those of the schema
// directory and of the shared types' directory, each with the named types
// it uses from the others. Unparsable files are reported as findings.
func loadCurrent(opts Options, root string, rep *Report) ([]current, error) {
	var files []srcFile
	abs := map[string]string{}
	for _, dir := range opts.schemaDirs() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("error reading schema dir: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() || !isSchema(e.Name()) {
				continue
			}
			a := filepath.Join(dir, e.Name())
			rel, err := filepath.Rel(root, a)
			if err != nil {
				rel = a
			}
			rel = filepath.ToSlash(rel)
			if _, dup := abs[rel]; dup {
				continue // the shared directory is the schema directory
			}
			b, err := os.ReadFile(a)
			if err != nil {
				return nil, err
			}
			abs[rel] = a
			files = append(files, srcFile{path: rel, text: string(b)})
		}
	}
	set := newFileSet(files)
	var out []current
	for _, f := range set.files {
		res, err := set.resolve(f.path, f.text)
		if err != nil {
			rep.Findings = append(rep.Findings, Finding{Kind: KindInvalid, File: f.path, Message: "schema does not parse: " + err.Error()})
			continue
		}
		out = append(out, current{file: f.path, abs: abs[f.path], text: f.text, schema: res.schema, name: res.name, refs: res.refs})
	}
	return out, nil
}

// referenced is the set of types the current files use from others: each
// is also checked under the subject of its full name, where it is
// registered for the files that use it.
func referenced(cur []current) map[string]bool {
	out := map[string]bool{}
	for _, c := range cur {
		for n := range c.refs {
			out[n] = true
		}
	}
	return out
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
	return o.subjectsOf(name, nil)
}

// subjectsOf is subjects, plus the subject of name's full name when name
// is a shared type (in shared) also routed as an event.
func (o Options) subjectsOf(name string, shared map[string]bool) []string {
	if s := o.Pipeline.SubjectsFor(name); len(s) > 0 {
		if shared[name] && !slices.Contains(s, name) {
			s = append(slices.Clone(s), name)
		}
		return s
	}
	// An event routed to no topic is still checked, under its record name.
	return []string{name}
}

// AgainstGit checks the working tree's schemas against every version of each
// schema file reachable from ref. A file that uses shared types (named
// types other files define) has a version for each state of those types
// too: each historical version is parsed with the schema directories'
// files as they were at its commit, and again at each later commit that
// changed them, as a registry would have received it.
func AgainstGit(ctx context.Context, opts Options, ref string) (*Report, error) {
	root, err := repoRoot(ctx, opts.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := git(ctx, root, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return nil, fmt.Errorf("%w: %q is not a commit", ErrGit, ref)
	}
	var dirsRel []string
	for _, d := range opts.schemaDirs() {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			return nil, err
		}
		if rel = filepath.ToSlash(rel); !slices.Contains(dirsRel, rel) {
			dirsRel = append(dirsRel, rel)
		}
	}
	rep := &Report{Against: "git:" + ref}
	cur, err := loadCurrent(opts, root, rep)
	if err != nil {
		return nil, err
	}
	lineages, commits, err := gitHistory(ctx, root, ref, dirsRel[0])
	if err != nil {
		return nil, err
	}
	renames, err := renamesSince(ctx, root, ref, dirsRel[0])
	if err != nil {
		return nil, err
	}
	renamedFrom := map[string]string{}
	for from, to := range renames {
		renamedFrom[to] = from
	}
	// Keep the lineages that concern the schema dirs: alive there at ref,
	// moved there since, or defining a type one of their files defines now
	// (other directories' schemas are other teams' business).
	names := map[string]bool{}
	for _, c := range cur {
		names[c.name] = true
	}
	under := func(p string) bool {
		for _, d := range dirsRel {
			if d == "." || d == "" || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
				return true
			}
		}
		return false
	}
	for p, l := range lineages {
		if under(p) || under(renames[p]) || (len(l.Versions) > 0 && names[topName(l.Versions[len(l.Versions)-1].Text)]) {
			continue
		}
		delete(lineages, p)
	}
	h := newHistory(root, dirsRel, lineages, commits)
	shared := referenced(cur)
	used := map[*Lineage]bool{}
	for _, c := range cur {
		lin := lineages[c.file]
		if lin == nil {
			lin = lineages[renamedFrom[c.file]]
		}
		if lin == nil {
			// A new file may still carry a type that lived in a file git
			// does not see as renamed (rewritten while moved, or moved
			// between the schema and the shared directory).
			for _, l := range lineages {
				if !used[l] && len(l.Versions) > 0 && topName(l.Versions[len(l.Versions)-1].Text) == c.name {
					lin = l
					break
				}
			}
		}
		if lin != nil {
			used[lin] = true
		}
		vs, err := h.versions(ctx, rep, lin)
		if err != nil {
			return nil, err
		}
		checkVersions(opts, rep, c, shared, vs)
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
		name := topName(last.Text)
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

// baseline is one version a current schema is compared with.
type baseline struct {
	schema  avro.Schema
	refs    map[string]bool // the shared types it was parsed with
	version int             // as reported: 1-based, or the registry's number
	commit  string
}

// history turns lineages into baselines.
type history struct {
	trees   *trees
	commits []logCommit
	pos     map[string]int
	dirs    map[string]bool // where shared types may have lived
	noted   map[string]bool
}

func newHistory(root string, dirsRel []string, lineages map[string]*Lineage, commits []logCommit) *history {
	h := &history{commits: commits, pos: map[string]int{}, dirs: map[string]bool{}, noted: map[string]bool{}}
	for i, c := range commits {
		h.pos[c.hash] = i
	}
	for _, d := range dirsRel {
		h.dirs[d] = true
	}
	// A historical version may use a type from a file that has moved since:
	// every directory the kept files lived in is searched too.
	for _, l := range lineages {
		for _, v := range l.Versions {
			h.dirs[path.Dir(v.Path)] = true
		}
	}
	var dirs []string
	for d := range h.dirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	h.trees = newTrees(root, dirs)
	return h
}

// touches reports whether commit i changed a file of the searched dirs.
func (h *history) touches(i int) bool {
	for _, p := range h.commits[i].paths {
		if isSchema(p) && h.dirs[path.Dir(p)] {
			return true
		}
	}
	return false
}

// versions returns a lineage's distinct versions, oldest first, as a
// registry would hold them: re-registering an identical schema creates no
// version. A version that uses shared types is parsed at its commit and at
// each later commit (until the file's next version) that changed a file of
// the schema directories, so that every state of its shared types counts.
func (h *history) versions(ctx context.Context, rep *Report, lin *Lineage) ([]baseline, error) {
	if lin == nil {
		return nil, nil
	}
	var out []baseline
	seen := map[[32]byte]bool{}
	add := func(s avro.Schema, refs map[string]bool, commit string) {
		if fp := s.Fingerprint(); !seen[fp] {
			seen[fp] = true
			out = append(out, baseline{schema: s, refs: refs, version: len(out) + 1, commit: commit})
		}
	}
	note := func(msg string) {
		if !h.noted[msg] {
			h.noted[msg] = true
			rep.Notes = append(rep.Notes, msg)
		}
	}
	for k, v := range lin.Versions {
		_, uses, err := compat.Names(v.Text)
		if err != nil || len(uses) == 0 {
			s, err := compat.Parse(v.Text)
			if err != nil {
				note(fmt.Sprintf("%s at %.12s does not parse and is skipped: %v", v.Path, v.Commit, err))
				continue
			}
			add(s, nil, v.Commit)
			continue
		}
		start, ok := h.pos[v.Commit]
		if !ok {
			continue
		}
		end := len(h.commits)
		if k+1 < len(lin.Versions) {
			if e, ok := h.pos[lin.Versions[k+1].Commit]; ok && e > start {
				end = e
			}
		}
		for i := start; i < end; i++ {
			if i != start && !h.touches(i) {
				continue
			}
			set, err := h.trees.at(ctx, h.commits[i].hash)
			if err != nil {
				return nil, err
			}
			res, err := set.resolve(v.Path, v.Text)
			if err != nil {
				note(fmt.Sprintf("%s at %.12s does not parse with the shared types of that commit and is skipped: %v", v.Path, h.commits[i].hash, err))
				continue
			}
			add(res.schema, res.refs, h.commits[i].hash)
		}
	}
	return out, nil
}

// checkVersions checks a current schema against its baselines under each of
// its subjects, at the subject's level in eventline.yaml.
func checkVersions(opts Options, rep *Report, c current, shared map[string]bool, existing []baseline) {
	for _, subj := range opts.subjectsOf(c.name, shared) {
		level := opts.Pipeline.Level(subj)
		sub := Subject{File: c.file, Subject: subj, Level: level, Versions: len(existing), New: len(existing) == 0, OK: true}
		if len(existing) > 0 {
			lvl, err := compat.ParseLevel(level)
			if err != nil { // config.validate already checked it
				rep.Findings = append(rep.Findings, Finding{Kind: KindInvalid, File: c.file, Subject: subj, Message: err.Error()})
				continue
			}
			sub.OK = compare(rep, c, subj, level, lvl, existing)
		}
		rep.Subjects = append(rep.Subjects, sub)
	}
}

// compare reports c's problems with existing under level lvl; true when
// there are none.
func compare(rep *Report, c current, subj, level string, lvl compat.Level, existing []baseline) bool {
	olds := make([]avro.Schema, len(existing))
	for i, b := range existing {
		olds[i] = b.schema
	}
	res := compat.Check(lvl, c.schema, olds)
	for _, p := range res.Problems {
		b := existing[p.Version-1]
		reader, writer, rrefs, wrefs := c.schema, b.schema, c.refs, b.refs
		if p.Direction == compat.DirectionForward {
			reader, writer, rrefs, wrefs = writer, reader, wrefs, rrefs
		}
		via, refPath := throughRefs(p, reader, writer, rrefs, wrefs)
		rep.Findings = append(rep.Findings, Finding{
			Kind: KindIncompatible, File: c.file, Subject: subj, Level: level,
			Version: b.version, Commit: b.commit, Direction: p.Direction,
			Location: p.Path, Via: via, RefPath: refPath, Message: p.Message, Hint: p.Hint,
		})
	}
	return res.Compatible
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
	shared := referenced(cur)
	fetch := &registrySchemas{cl: cl, cache: map[string]sr.SubjectSchema{}}
	for _, c := range cur {
		for _, subj := range opts.subjectsOf(c.name, shared) {
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
			// With shared types on either side, the registry's endpoint
			// cannot judge the working tree: the new schema's references
			// would have to name registered versions of the shared types
			// as they are now. Its versions are read with their references
			// resolved and compared here, at the registry's level.
			withRefs := len(c.refs) > 0
			var got []sr.SubjectSchema
			for _, v := range versions {
				ss, err := fetch.get(ctx, subj, v)
				if err != nil {
					return nil, fmt.Errorf("error reading version %d of %s: %w", v, subj, err)
				}
				withRefs = withRefs || len(ss.References) > 0
				got = append(got, ss)
			}
			if withRefs {
				lvl, err := compat.ParseLevel(sub.Level)
				if err != nil {
					rep.Findings = append(rep.Findings, Finding{Kind: KindInvalid, File: c.file, Subject: subj, Message: err.Error()})
					continue
				}
				var base []baseline
				for _, ss := range got {
					s, refs, err := fetch.parse(ctx, ss.Schema)
					if err != nil {
						rep.Notes = append(rep.Notes, fmt.Sprintf("subject %s version %d does not parse with its references and is skipped: %v", subj, ss.Version, err))
						continue
					}
					base = append(base, baseline{schema: s, refs: refs, version: ss.Version})
				}
				sub.OK = compare(rep, c, subj, sub.Level, lvl, base)
				rep.Subjects = append(rep.Subjects, sub)
				continue
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

// registrySchemas reads a registry's schemas with their references, each
// subject version once.
type registrySchemas struct {
	cl    *sr.Client
	cache map[string]sr.SubjectSchema
}

func (r *registrySchemas) get(ctx context.Context, subject string, version int) (sr.SubjectSchema, error) {
	key := subject + "\x00" + strconv.Itoa(version)
	if ss, ok := r.cache[key]; ok {
		return ss, nil
	}
	ss, err := r.cl.SchemaByVersion(ctx, subject, version)
	if err != nil {
		return sr.SubjectSchema{}, err
	}
	r.cache[key] = ss
	return ss, nil
}

// maxRefDepth bounds how deep references may nest in the registry.
const maxRefDepth = 32

// parse parses a registered schema after the schemas it references,
// transitively, dependencies first (as Confluent's Avro provider does).
// refs are the full names of the referenced schemas' top-level types.
func (r *registrySchemas) parse(ctx context.Context, s sr.Schema) (avro.Schema, map[string]bool, error) {
	if len(s.References) == 0 {
		sch, err := compat.Parse(s.Schema)
		return sch, nil, err
	}
	var deps []string
	refs := map[string]bool{}
	seen := map[string]bool{}
	var visit func(rs []sr.SchemaReference, depth int) error
	visit = func(rs []sr.SchemaReference, depth int) error {
		if depth > maxRefDepth {
			return fmt.Errorf("%w: references nest more than %d deep", schemas.ErrBadReference, maxRefDepth)
		}
		for _, ref := range rs {
			key := ref.Subject + "\x00" + strconv.Itoa(ref.Version)
			if seen[key] {
				continue
			}
			if seen[key] = true; len(seen) > maxRefFiles {
				return fmt.Errorf("%w: more than %d referenced schemas", schemas.ErrBadReference, maxRefFiles)
			}
			ss, err := r.get(ctx, ref.Subject, ref.Version)
			if err != nil {
				return fmt.Errorf("reference %s (subject %s version %d): %w", ref.Name, ref.Subject, ref.Version, err)
			}
			if err := visit(ss.References, depth+1); err != nil {
				return err
			}
			deps = append(deps, ss.Schema.Schema)
			if n := topName(ss.Schema.Schema); n != "" {
				refs[n] = true
			}
		}
		return nil
	}
	if err := visit(s.References, 1); err != nil {
		return nil, nil, err
	}
	sch, err := compat.ParseWith(s.Schema, deps...)
	return sch, refs, err
}
