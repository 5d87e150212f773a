package schemacheck

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/eventline/eventline/registry"
	"github.com/eventline/eventline/schemas"
)

// ErrInvalidSchema: a schema file does not parse; nothing is registered.
var ErrInvalidSchema = errors.New("invalid schema file")

// Registration is one subject's outcome of Register.
type Registration struct {
	Subject string
	Version int
	ID      int
	Level   string
}

// Register registers every schema file under each of its subjects, setting
// the subject's compatibility level from eventline.yaml first so the
// registry checks the new version at the intended level. Registering an
// unchanged schema returns its existing version and id (the registry's
// idempotence), so running it twice changes nothing.
func Register(ctx context.Context, opts Options, cl *sr.Client) ([]Registration, error) {
	rep := &Report{}
	cur, err := loadWorkingTree(ctx, opts, rep)
	if err != nil {
		return nil, err
	}
	if rep.Invalid() {
		var errs []error
		for _, f := range rep.Findings {
			errs = append(errs, fmt.Errorf("%s: %s", f.File, f.Message))
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, errors.Join(errs...))
	}
	cat, err := opts.catalog()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
	}
	var out []Registration
	done := map[string]bool{} // subjects registered, shared types' included
	refd := referenced(cur)
	for _, c := range cur {
		var subjects []string
		for _, subj := range opts.subjectsOf(c.name, refd) {
			if !done[subj] {
				subjects = append(subjects, subj)
			}
		}
		if len(subjects) == 0 {
			continue
		}
		// The shared types the event uses, under their own subjects
		// first (schemas.RegistrySchema says how they are named).
		sch, deps, err := cat.RegistrySchema(ctx, cl, c.name, schemas.RefOptions{Register: true, Level: opts.Pipeline.Level})
		if err != nil {
			if registry.IsIncompatible(err) {
				return out, fmt.Errorf("a shared type %s uses is incompatible with its subject (the registry refused it): %w", c.file, err)
			}
			return out, fmt.Errorf("registering the shared types %s uses: %w", c.file, err)
		}
		for _, d := range deps {
			if !done[d.Subject] {
				done[d.Subject] = true
				out = append(out, Registration{Subject: d.Subject, Version: d.Version, ID: d.ID, Level: opts.Pipeline.Level(d.Subject)})
			}
		}
		for _, subj := range subjects {
			level := opts.Pipeline.Level(subj)
			var lvl sr.CompatibilityLevel
			if err := lvl.UnmarshalText([]byte(level)); err != nil {
				return out, fmt.Errorf("subject %s: level %s: %w", subj, level, err)
			}
			res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: lvl}, subj)
			if len(res) == 1 && res[0].Err != nil {
				return out, fmt.Errorf("error setting %s of subject %s: %w", level, subj, res[0].Err)
			}
			ss, err := cl.CreateSchema(ctx, subj, sch)
			if err != nil {
				if registry.IsIncompatible(err) {
					return out, fmt.Errorf("%s is incompatible with subject %s at its level %s (the registry refused it): %w", c.file, subj, level, err)
				}
				var re *sr.ResponseError
				if errors.As(err, &re) {
					return out, fmt.Errorf("registering %s as %s: the registry answered HTTP %d (error %d): %w", c.file, subj, re.StatusCode, re.ErrorCode, err)
				}
				return out, fmt.Errorf("error registering %s as %s: %w", c.file, subj, err)
			}
			done[subj] = true
			out = append(out, Registration{Subject: subj, Version: ss.Version, ID: ss.ID, Level: level})
		}
	}
	return out, nil
}
