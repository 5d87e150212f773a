package schemas

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/sr"
)

// ErrReferenceNotRegistered: a shared type an event uses has no version in
// the registry equal to the catalogue's file (see Catalog.RegistrySchema).
var ErrReferenceNotRegistered = errors.New("referenced schema not registered")

// References are how a catalogue's shared types reach a registry, decided
// here once for the producer and `eventline schemas register`:
//
//   - a file an event uses is registered under the subject of its Avro full
//     name (e.g. "acme.shared.Money"), whichever topics the events go to:
//     one subject per shared type, evolving under its own compatibility
//     level, as Confluent's documentation and Maven plugin name them;
//   - the reference's name is that full name (what Confluent's Avro
//     provider expects), its version the one the registry holds of the
//     file's text;
//   - a schema's references list only the files it uses directly; theirs
//     are registered first and resolved by the registry transitively.

// RefOptions says how Catalog.RegistrySchema treats a shared type.
type RefOptions struct {
	// Register registers a shared type missing from its subject (else
	// ErrReferenceNotRegistered).
	Register bool
	// Level, when set, returns the compatibility level to set on a shared
	// type's subject before registering it (BACKWARD, FULL, ...); "" or a
	// nil Level leaves the registry's.
	Level func(subject string) string
}

// RegistrySchema returns the schema of the catalogue's type name as a
// registry takes it: its text and its references. Each file it uses,
// transitively, is looked up (or registered, with opts.Register) under the
// subject of its full name first, dependencies before the files that use
// them. deps are those subjects' versions, in that order. A self-contained
// schema has no references and costs no request.
func (c *Catalog) RegistrySchema(ctx context.Context, cl *sr.Client, name string, opts RefOptions) (s sr.Schema, deps []sr.SubjectSchema, err error) {
	info, ok := c.Lookup(name)
	if !ok {
		return sr.Schema{}, nil, fmt.Errorf("%w: %s", ErrNotInCatalog, name)
	}
	versions := map[string]int{}
	refsOf := func(i Info) []sr.SchemaReference {
		var refs []sr.SchemaReference
		for _, r := range i.References {
			refs = append(refs, sr.SchemaReference{Name: r, Subject: r, Version: versions[r]})
		}
		return refs
	}
	for _, d := range c.Dependencies(name) {
		want := sr.Schema{Schema: d.Text, Type: sr.TypeAvro, References: refsOf(d)}
		ss, err := cl.LookupSchema(ctx, d.Name, want)
		if err != nil && isNotFound(err) && opts.Register {
			ss, err = register(ctx, cl, d.Name, want, opts.Level)
		}
		switch {
		case err != nil && isNotFound(err):
			return sr.Schema{}, deps, fmt.Errorf("%w: subject %s has no version equal to %s (used by %s); register it with `eventline schemas register`", ErrReferenceNotRegistered, d.Name, d.File, name)
		case err != nil:
			return sr.Schema{}, deps, fmt.Errorf("shared type %s (%s) in subject %s: %w", d.Name, d.File, d.Name, err)
		}
		versions[d.Name] = ss.Version
		deps = append(deps, ss)
	}
	return sr.Schema{Schema: info.Text, Type: sr.TypeAvro, References: refsOf(info)}, deps, nil
}

func register(ctx context.Context, cl *sr.Client, subject string, s sr.Schema, level func(string) string) (sr.SubjectSchema, error) {
	if level != nil {
		if l := level(subject); l != "" {
			var lvl sr.CompatibilityLevel
			if err := lvl.UnmarshalText([]byte(l)); err != nil {
				return sr.SubjectSchema{}, fmt.Errorf("compatibility level %q: %w", l, err)
			}
			if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: lvl}, subject); len(res) == 1 && res[0].Err != nil {
				return sr.SubjectSchema{}, fmt.Errorf("error setting compatibility %s: %w", l, res[0].Err)
			}
		}
	}
	return cl.CreateSchema(ctx, subject, s)
}

// isNotFound: the registry has no such subject or no such version in it.
func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && (re.ErrorCode == 40401 || re.ErrorCode == 40403 || re.StatusCode == http.StatusNotFound)
}
