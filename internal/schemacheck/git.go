package schemacheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
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
func gitHistory(ctx context.Context, repo, ref, dir string) (map[string]*Lineage, error) {
	// Every .avsc of the repository, not only dir's: a schema directory
	// moved (e.g. next to the code that owns it) keeps its history only if
	// git sees both sides of the rename.
	out, err := git(ctx, repo, "log", "--reverse", "--topo-order", "-M", "--name-status", "--format=%x01%H", ref, "--", "*.avsc")
	if err != nil {
		return nil, err
	}
	alive := map[string]*Lineage{}
	for _, block := range strings.Split(out, "\x01") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) == 0 || lines[0] == "" {
			continue
		}
		commit := strings.TrimSpace(lines[0])
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
					return nil, err
				}
			case 'D':
				if lin := alive[f[1]]; lin != nil && len(lin.Versions) > 0 {
					removed[recordName(lin.Versions[len(lin.Versions)-1].Text)] = lin
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
					return nil, err
				}
			}
		}
		for _, p := range adds {
			lin := &Lineage{}
			if err := lin.add(ctx, repo, commit, p); err != nil {
				return nil, err
			}
			if prev, ok := removed[recordName(lin.Versions[0].Text)]; ok && prev != nil {
				delete(removed, recordName(lin.Versions[0].Text))
				prev.Versions = append(prev.Versions, lin.Versions[0])
				lin = prev
			}
			alive[p] = lin
		}
	}
	for p, lin := range alive {
		lin.Path = p
	}
	return alive, nil
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
