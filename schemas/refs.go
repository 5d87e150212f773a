package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas/compat"
)

// sourceFile is one .avsc file as read.
type sourceFile struct {
	name string
	text []byte
}

// parsed is what parseSet learns of a file before parsing it.
type parsed struct {
	sourceFile
	uses []int // indexes of the files whose types it uses
}

// parseSet parses a set of schema files that may use each other's named
// types: each file is parsed after the files it uses (a depth-first order;
// a cycle is an error), in a name cache holding only what it uses, so a
// file cannot lean on a type it does not reference. The result is sorted by
// name.
func parseSet(files []sourceFile) ([]Info, error) {
	// A name may be defined in several files (self-contained events each
	// inlining their own copy, as before references); only a file that
	// uses it without defining it needs it to be defined exactly once.
	definedBy := map[string][]int{}
	ps := make([]parsed, len(files))
	uses := make([][]string, len(files))
	for i, f := range files {
		if !json.Valid(f.text) {
			return nil, fmt.Errorf("%s: not valid JSON", f.name)
		}
		defines, used, err := compat.Names(string(f.text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		for _, n := range defines {
			definedBy[n] = append(definedBy[n], i)
		}
		ps[i].sourceFile, uses[i] = f, used
	}
	for i := range ps {
		for _, n := range uses[i] {
			var j int
			switch d := definedBy[n]; len(d) {
			case 0:
				return nil, fmt.Errorf("%w: %s uses %s, which no file of the catalogue defines", ErrBadReference, ps[i].name, n)
			case 1:
				j = d[0]
			default:
				return nil, fmt.Errorf("%w: %s uses %s, which %s and %s both define", ErrBadReference, ps[i].name, n, files[d[0]].name, files[d[1]].name)
			}
			if !slices.Contains(ps[i].uses, j) {
				ps[i].uses = append(ps[i].uses, j)
			}
		}
	}
	// Depth-first: a file's dependencies, transitively, before it.
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(ps))
	deps := make([][]int, len(ps)) // each file's transitive dependencies, in parse order
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("%w: the files use each other in a cycle: %s", ErrBadReference, strings.Join(append(path, ps[i].name), " -> "))
		}
		state[i] = visiting
		var order []int
		for _, j := range ps[i].uses {
			if err := visit(j, append(path, ps[i].name)); err != nil {
				return err
			}
			for _, k := range append(slices.Clone(deps[j]), j) {
				if !slices.Contains(order, k) {
					order = append(order, k)
				}
			}
		}
		deps[i], state[i] = order, done
		return nil
	}
	out := make([]Info, len(ps))
	for i := range ps {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
		texts := make([]string, len(deps[i]))
		for k, j := range deps[i] {
			texts[k] = string(ps[j].text)
		}
		s, err := compat.ParseWith(string(ps[i].text), texts...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ps[i].name, err)
		}
		named, ok := s.(avro.NamedSchema)
		if !ok {
			return nil, fmt.Errorf("%s: top level is %s, want a named type (record, enum or fixed)", ps[i].name, s.Type())
		}
		out[i] = Info{Name: named.FullName(), File: ps[i].name, Text: string(ps[i].text), Schema: s}
	}
	// References name each used file by its top-level type.
	for i := range ps {
		for _, j := range ps[i].uses {
			out[i].References = append(out[i].References, out[j].Name)
		}
		sort.Strings(out[i].References)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return nil, fmt.Errorf("%s and %s both define %s", out[i-1].File, out[i].File, out[i].Name)
		}
	}
	return out, nil
}
