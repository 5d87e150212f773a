package schemacheck_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/schemacheck"
	"github.com/eventline/eventline/pipeline"
)

const pipelineFile = `schemas: {dir: avro, compatibility: BACKWARD_TRANSITIVE}
topics: [{name: pay, events: [acme.Paid]}]
`

// Three versions of one event: v2 adds a field with a default (compatible
// with v1 both ways), v3 drops that default (new readers cannot read v1).
const (
	paidV1 = `{"type": "record", "name": "Paid", "namespace": "acme", "fields": [{"name": "id", "type": "string"}]}`
	paidV2 = `{"type": "record", "name": "Paid", "namespace": "acme", "fields": [{"name": "id", "type": "string"}, {"name": "cents", "type": "long", "default": 0}]}`
	paidV3 = `{"type": "record", "name": "Paid", "namespace": "acme", "fields": [{"name": "id", "type": "string"}, {"name": "cents", "type": "long"}]}`
)

// repo is a git repository holding eventline.yaml and avro/Paid.avsc.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	r.write("eventline.yaml", pipelineFile)
	return r
}

func (r *repo) git(args ...string) {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.email=ci@example.com", "-c", "user.name=ci", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = r.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func (r *repo) write(name, text string) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) commit(msg string) {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
}

func (r *repo) check(ref string) (*schemacheck.Report, error) {
	r.t.Helper()
	p, err := pipeline.Load(filepath.Join(r.dir, "eventline.yaml"))
	if err != nil {
		r.t.Fatal(err)
	}
	return schemacheck.AgainstGit(context.Background(), schemacheck.Options{Pipeline: p, Dir: r.dir}, ref)
}

// The CI check against git history: a compatible change passes; a change
// that breaks an earlier version (not only the last: the level is
// transitive) fails naming the file, subject, level, the version it breaks
// and where; a deleted schema fails; a file that does not parse is invalid;
// a schema with no history passes as new.
func TestAgainstGit(t *testing.T) {
	r := newRepo(t)
	r.write("avro/Paid.avsc", paidV1)
	r.commit("v1")

	rep, err := r.check("HEAD")
	if err != nil || !rep.OK() || len(rep.Subjects) != 1 || rep.Subjects[0].Subject != "pay-acme.Paid" || rep.Subjects[0].Versions != 1 {
		t.Fatalf("unchanged: %+v, %v", rep, err)
	}

	r.write("avro/Paid.avsc", paidV2)
	if rep, err := r.check("HEAD"); err != nil || !rep.OK() {
		t.Fatalf("compatible change: %+v, %v", rep, err)
	}
	r.commit("v2")

	// v3 reads v2 (cents is there) but not v1: only a transitive check
	// against every historical version catches it.
	r.write("avro/Paid.avsc", paidV3)
	rep, err = r.check("HEAD")
	if err != nil || rep.OK() || rep.Invalid() {
		t.Fatalf("breaking change: %+v, %v", rep, err)
	}
	f := rep.Findings[0]
	if f.Kind != schemacheck.KindIncompatible || f.File != "avro/Paid.avsc" || f.Subject != "pay-acme.Paid" ||
		f.Level != "BACKWARD_TRANSITIVE" || f.Version != 1 || !strings.Contains(f.Location, "cents") || f.Message == "" {
		t.Errorf("finding %+v: want the file, subject, level, version 1 and the field", f)
	}

	r.write("avro/Paid.avsc", `{"type": "record",`)
	if rep, err := r.check("HEAD"); err != nil || !rep.Invalid() {
		t.Fatalf("a file that does not parse: %+v, %v", rep, err)
	}

	if err := os.Remove(filepath.Join(r.dir, "avro", "Paid.avsc")); err != nil {
		t.Fatal(err)
	}
	r.write("avro/Other.avsc", `{"type": "record", "name": "Other", "namespace": "acme", "fields": []}`)
	rep, err = r.check("HEAD")
	if err != nil || rep.OK() {
		t.Fatalf("deleted schema: %+v, %v", rep, err)
	}
	var deleted, fresh bool
	for _, f := range rep.Findings {
		deleted = deleted || f.Kind == schemacheck.KindDeleted && strings.Contains(f.File, "Paid")
	}
	for _, s := range rep.Subjects {
		fresh = fresh || s.New && strings.Contains(s.Subject, "acme.Other") && s.OK
	}
	if !deleted || !fresh {
		t.Errorf("report %+v: want Paid deleted and Other new", rep)
	}

	if _, err := r.check("no-such-ref"); !errors.Is(err, schemacheck.ErrGit) {
		t.Errorf("an unknown ref: %v, want ErrGit", err)
	}
}
