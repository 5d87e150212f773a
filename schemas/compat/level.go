package compat

import (
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
)

// Level is a schema registry's compatibility level, with Confluent Schema
// Registry's meaning.
type Level string

// The compatibility levels.
const (
	// None accepts any new schema.
	None Level = "NONE"
	// Backward: the new schema reads data written with the latest one, so
	// consumers can upgrade first.
	Backward Level = "BACKWARD"
	// BackwardTransitive: the new schema reads data written with every
	// existing one.
	BackwardTransitive Level = "BACKWARD_TRANSITIVE"
	// Forward: the latest schema reads data written with the new one, so
	// producers can upgrade first.
	Forward Level = "FORWARD"
	// ForwardTransitive: every existing schema reads data written with the
	// new one.
	ForwardTransitive Level = "FORWARD_TRANSITIVE"
	// Full is Backward and Forward.
	Full Level = "FULL"
	// FullTransitive is BackwardTransitive and ForwardTransitive.
	FullTransitive Level = "FULL_TRANSITIVE"
)

var levels = []Level{None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive}

// ParseLevel parses a level name, ignoring case and surrounding space.
func ParseLevel(s string) (Level, error) {
	for _, l := range levels {
		if strings.EqualFold(strings.TrimSpace(s), string(l)) {
			return l, nil
		}
	}
	names := make([]string, len(levels))
	for i, l := range levels {
		names[i] = string(l)
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownLevel, s, strings.Join(names, ", "))
}

// Directions of a Problem.
const (
	// DirectionBackward: the new schema reading an existing version's data.
	DirectionBackward = "backward"
	// DirectionForward: an existing version reading the new schema's data.
	DirectionForward = "forward"
)

// Problem is an incompatibility between the new schema and one existing
// version. Its Location and Path are in the reader's schema: the new schema
// for DirectionBackward, the existing version for DirectionForward.
type Problem struct {
	Incompatibility
	// Version is the existing version involved, 1-based, oldest first.
	Version int
	// Direction is DirectionBackward or DirectionForward.
	Direction string
}

// Result is the outcome of Check.
type Result struct {
	// Compatible is true when the new schema may be registered.
	Compatible bool
	// Problems lists every incompatibility found, by version (oldest first)
	// and, within a version, backward before forward.
	Problems []Problem
}

// Check decides whether newSchema may follow the existing versions (oldest
// first) under level. With no existing version every schema is compatible.
//
// A level that is not one of the seven constants is checked as
// FullTransitive, the strictest, so that a mistyped level never lets an
// incompatible schema through; use ParseLevel to reject it instead.
func Check(level Level, newSchema avro.Schema, existing []avro.Schema) Result {
	var backward, forward, transitive bool
	switch level {
	case None:
		return Result{Compatible: true}
	case Backward:
		backward = true
	case BackwardTransitive:
		backward, transitive = true, true
	case Forward:
		forward = true
	case ForwardTransitive:
		forward, transitive = true, true
	case Full:
		backward, forward = true, true
	default: // FullTransitive, and unknown levels (see above)
		backward, forward, transitive = true, true, true
	}

	first := len(existing) - 1 // the latest only
	if transitive {
		first = 0
	}
	res := Result{Compatible: true}
	for i := max(first, 0); i < len(existing); i++ {
		if backward {
			for _, inc := range CheckPair(newSchema, existing[i]) {
				res.Problems = append(res.Problems, Problem{Incompatibility: inc, Version: i + 1, Direction: DirectionBackward})
			}
		}
		if forward {
			for _, inc := range CheckPair(existing[i], newSchema) {
				res.Problems = append(res.Problems, Problem{Incompatibility: inc, Version: i + 1, Direction: DirectionForward})
			}
		}
	}
	res.Compatible = len(res.Problems) == 0
	return res
}

// Messages returns one line per problem, e.g.
//
//	version 2 (backward) /fields/amount/type: field `amount`: reader type int cannot read writer type long — hint: the reader needs long, float or double, or a union with such a branch
func (r Result) Messages() []string {
	out := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		out[i] = fmt.Sprintf("version %d (%s) %s: %s — hint: %s", p.Version, p.Direction, p.Path, p.Message, p.Hint)
	}
	return out
}
