package schemacheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"strconv"
	"strings"
)

// Version is one historical version of a schema file.
type Version struct {
	Commit string // full hash of the commit that wrote it
	Path   string // the file's path (relative to the repository root) in that commit
	Text   string
}

// Lineage is one schema file followed through renames, oldest version first.
type Lineage struct {
	Versions []Version
	// Path is the file's path at REF; empty when it was deleted before REF.
	Path string
}

// gitHistory reads every version of every .avsc file under dir in the
// commits reachable from ref, following renames. It returns the lineages
// alive at ref keyed by their path there: those of every .avsc file of
// the repository (the caller keeps the ones that concern dir), so that a
// schema directory moved since keeps its history.
//
// Hand-written on top of `git log --name-status -M` because no Go library
// we use walks history with rename detection, and go-git's rename
// following is weaker than git's own.
func gitHistory(ctx context.Context, repo, ref, dir string) (map[string]*Lineage, []logCommit, error) {
	// Every .avsc of the repository, not only dir's: a schema directory
	// moved (e.g. next to the code that owns it) keeps its history only if
	// git sees both sides of the rename.
	out, err := git(ctx, repo, "log", "--reverse", "--topo-order", "-M", "--name-status", "--format=%x01%H", ref, "--", "*.avsc")
	if err != nil {
		return nil, nil, err
	}
	alive := map[string]*Lineage{}
	var commits []logCommit
	for _, block := range strings.Split(out, "\x01") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) == 0 || lines[0] == "" {
			continue
		}
		commit := strings.TrimSpace(lines[0])
		lc := logCommit{hash: commit}
		for _, l := range lines[1:] {
			if f := strings.Split(l, "\t"); len(f) >= 2 {
				lc.paths = append(lc.paths, f[1:]...)
			}
		}
		commits = append(commits, lc)
		// git pairs a deletion and an addition as a rename only when the
		// contents are similar enough; a small schema rewritten while moved
		// is not. A file deleted and one added in the same commit that
		// define the same record are the same subject, so they are joined
		// here: deletions first, additions may then claim them.
		removed := map[string]*Lineage{} // record full name -> lineage deleted in this commit
		var adds []string
		for _, l := range lines[1:] {
			f := strings.Split(l, "\t")
			if len(f) < 2 || f[0] == "" {
				continue
			}
			switch status := f[0][0]; status {
			case 'A':
				if isSchema(f[1]) {
					adds = append(adds, f[1])
				}
			case 'M', 'T':
				p := f[1]
				if !isSchema(p) {
					continue
				}
				lin := alive[p]
				if lin == nil {
					lin = &Lineage{}
					alive[p] = lin
				}
				if err := lin.add(ctx, repo, commit, p); err != nil {
					return nil, nil, err
				}
			case 'D':
				if lin := alive[f[1]]; lin != nil && len(lin.Versions) > 0 {
					removed[topName(lin.Versions[len(lin.Versions)-1].Text)] = lin
				}
				delete(alive, f[1])
			case 'R', 'C':
				if len(f) < 3 {
					continue
				}
				from, to := f[1], f[2]
				lin := alive[from]
				if status == 'R' {
					delete(alive, from)
				}
				if !isSchema(to) {
					continue
				}
				if lin == nil || status == 'C' {
					lin = &Lineage{} // a copy starts a subject of its own
				}
				alive[to] = lin
				if err := lin.add(ctx, repo, commit, to); err != nil {
					return nil, nil, err
				}
			}
		}
		for _, p := range adds {
			lin := &Lineage{}
			if err := lin.add(ctx, repo, commit, p); err != nil {
				return nil, nil, err
			}
			if prev, ok := removed[topName(lin.Versions[0].Text)]; ok && prev != nil {
				delete(removed, topName(lin.Versions[0].Text))
				prev.Versions = append(prev.Versions, lin.Versions[0])
				lin = prev
			}
			alive[p] = lin
		}
	}
	for p, lin := range alive {
		lin.Path = p
	}
	return alive, commits, nil
}

// logCommit is one commit of the history gitHistory read, with the .avsc
// paths it touched.
type logCommit struct {
	hash  string
	paths []string
}

func (l *Lineage) add(ctx context.Context, repo, commit, p string) error {
	text, err := git(ctx, repo, "show", commit+":"+p)
	if err != nil {
		return err
	}
	if n := len(l.Versions); n > 0 && l.Versions[n-1].Text == text {
		return nil // a pure rename
	}
	l.Versions = append(l.Versions, Version{Commit: commit, Path: p, Text: text})
	return nil
}

// renamesSince maps paths at ref to their paths in the working tree for
// schema files git sees as renamed since ref.
func renamesSince(ctx context.Context, repo, ref, dir string) (map[string]string, error) {
	out, err := git(ctx, repo, "diff", "-M", "--name-status", ref, "--", "*.avsc")
	if err != nil {
		return nil, err
	}
	renames := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, "\t")
		if len(f) == 3 && strings.HasPrefix(f[0], "R") {
			renames[f[1]] = f[2]
		}
	}
	return renames, nil
}

func isSchema(p string) bool { return path.Ext(p) == ".avsc" }

// ErrGit marks failures of the git commands (bad ref, not a repository):
// invalid input rather than an incompatible schema.
var ErrGit = errors.New("git")

func git(ctx context.Context, repo string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo, "-c", "core.quotepath=off"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: git %s: %v: %s", ErrGit, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// repoRoot returns the top of the repository holding dir.
func repoRoot(ctx context.Context, dir string) (string, error) {
	out, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// trees reads the .avsc files of a few directories at given commits, to
// parse a historical schema with the shared types as they were then. Each
// commit's listing and each blob are read once.
type trees struct {
	repo  string
	dirs  []string // slash paths relative to the repository root
	sets  map[string]*fileSet
	blobs map[string]string // blob id -> text
}

func newTrees(repo string, dirs []string) *trees {
	return &trees{repo: repo, dirs: dirs, sets: map[string]*fileSet{}, blobs: map[string]string{}}
}

// at returns the files of t.dirs (not their subdirectories) at commit.
func (t *trees) at(ctx context.Context, commit string) (*fileSet, error) {
	if s, ok := t.sets[commit]; ok {
		return s, nil
	}
	args := []string{"ls-tree", "-z", commit, "--"}
	for _, d := range t.dirs {
		if d == "." || d == "" {
			args = append(args, ".")
		} else {
			args = append(args, strings.TrimSuffix(d, "/")+"/")
		}
	}
	out, err := git(ctx, t.repo, args...)
	if err != nil {
		return nil, err
	}
	type entry struct{ path, blob string }
	var entries []entry
	var missing []string
	for _, rec := range strings.Split(out, "\x00") {
		meta, p, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 || f[1] != "blob" || !isSchema(p) {
			continue
		}
		entries = append(entries, entry{p, f[2]})
		if _, ok := t.blobs[f[2]]; !ok {
			missing = append(missing, f[2])
		}
	}
	if err := t.readBlobs(ctx, missing); err != nil {
		return nil, err
	}
	files := make([]srcFile, len(entries))
	for i, e := range entries {
		files[i] = srcFile{path: e.path, text: t.blobs[e.blob]}
	}
	s := newFileSet(files)
	t.sets[commit] = s
	return s, nil
}

// readBlobs reads blobs with one `git cat-file --batch`.
func (t *trees) readBlobs(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, "git", "-C", t.repo, "cat-file", "--batch")
	cmd.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: git cat-file --batch: %v: %s", ErrGit, err, strings.TrimSpace(stderr.String()))
	}
	rest := stdout.Bytes()
	for range ids {
		head, body, ok := bytes.Cut(rest, []byte("\n"))
		f := strings.Fields(string(head))
		if !ok || len(f) != 3 {
			return fmt.Errorf("%w: git cat-file --batch: unexpected output %q", ErrGit, head)
		}
		n, err := strconv.Atoi(f[2])
		if err != nil || n > len(body) {
			return fmt.Errorf("%w: git cat-file --batch: unexpected size in %q", ErrGit, head)
		}
		t.blobs[f[0]] = string(body[:n])
		rest = body[min(n+1, len(body)):]
	}
	return nil
}
