package compat

import (
	"errors"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Level{
		"NONE": None, "backward": Backward, "Backward_Transitive": BackwardTransitive,
		"forward": Forward, "FORWARD_TRANSITIVE": ForwardTransitive, "full": Full, " full_transitive ": FullTransitive,
	} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "BACKWARDS", "full-transitive"} {
		_, err := ParseLevel(in)
		if !errors.Is(err, ErrUnknownLevel) {
			t.Errorf("ParseLevel(%q) error = %v, want ErrUnknownLevel", in, err)
			continue
		}
		for _, l := range levels {
			if !strings.Contains(err.Error(), string(l)) {
				t.Errorf("ParseLevel(%q) error %q does not name %s", in, err, l)
			}
		}
	}
}

func TestCheckLevels(t *testing.T) {
	t.Parallel()
	// Backward history: v2 added b with a default; the new version drops the
	// default. Reading v2's data is fine (it has b); reading v1's is not.
	bv1 := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`
	bv2 := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":""}]}`
	bNew := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}`
	// Forward history: v1 had b without a default, v2 gave it one, the new
	// version drops b. v2 reads the new data (default); v1 cannot.
	fv1 := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}`
	fv2 := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":""}]}`
	fNew := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`
	// Breaks both ways against the latest only: int narrowed from long, and
	// the older version still had int.
	xv1 := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`
	xv2 := `{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}`
	xNew := `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`

	type problem struct {
		version   int
		direction string
		kind      Kind
	}
	tests := []struct {
		name     string
		level    Level
		newText  string
		existing []string
		want     []problem
	}{
		{"backward ok with latest", Backward, bNew, []string{bv1, bv2}, nil},
		{"backward transitive fails on v1", BackwardTransitive, bNew, []string{bv1, bv2},
			[]problem{{1, DirectionBackward, ReaderFieldMissingDefaultValue}}},
		{"forward ignores backward breaks", Forward, bNew, []string{bv1, bv2}, nil},
		{"forward ok with latest", Forward, fNew, []string{fv1, fv2}, nil},
		{"forward transitive fails on v1", ForwardTransitive, fNew, []string{fv1, fv2},
			[]problem{{1, DirectionForward, ReaderFieldMissingDefaultValue}}},
		{"backward ignores forward breaks", Backward, fNew, []string{fv1, fv2}, nil},
		{"full checks both directions with latest", Full, xNew, []string{xv1, xv2},
			[]problem{{2, DirectionBackward, TypeMismatch}}},
		{"full transitive", FullTransitive, bNew, []string{bv1, bv2},
			[]problem{{1, DirectionBackward, ReaderFieldMissingDefaultValue}}},
		{"full transitive forward", FullTransitive, fNew, []string{fv1, fv2},
			[]problem{{1, DirectionForward, ReaderFieldMissingDefaultValue}}},
		{"none accepts anything", None, `"string"`, []string{`"int"`}, nil},
		{"no existing version", FullTransitive, `"string"`, nil, nil},
		{"unknown level is strictest", Level("SOMETIMES"), bNew, []string{bv1, bv2},
			[]problem{{1, DirectionBackward, ReaderFieldMissingDefaultValue}}},
		{"type change fails both ways", Full, `"string"`, []string{`"int"`},
			[]problem{{1, DirectionBackward, TypeMismatch}, {1, DirectionForward, TypeMismatch}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var existing []avro.Schema
			for _, e := range tt.existing {
				existing = append(existing, mustParse(t, e))
			}
			res := Check(tt.level, mustParse(t, tt.newText), existing)
			if res.Compatible != (len(tt.want) == 0) {
				t.Errorf("Compatible = %v with problems %v", res.Compatible, res.Messages())
			}
			if len(res.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d: %v", len(res.Problems), len(tt.want), res.Messages())
			}
			for i, w := range tt.want {
				p := res.Problems[i]
				if p.Version != w.version || p.Direction != w.direction || p.Kind != w.kind {
					t.Errorf("problem %d = version %d %s %s, want version %d %s %s",
						i, p.Version, p.Direction, p.Kind, w.version, w.direction, w.kind)
				}
			}
		})
	}
}

func TestResultMessages(t *testing.T) {
	t.Parallel()
	v1 := mustParse(t, `{"type":"record","name":"P","fields":[{"name":"amount","type":"long"}]}`)
	next := mustParse(t, `{"type":"record","name":"P","fields":[{"name":"amount","type":"int"}]}`)
	msgs := Check(Backward, next, []avro.Schema{v1}).Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1: %q", len(msgs), msgs)
	}
	const prefix = "version 1 (backward) /fields/amount/type: field `amount`: reader type int cannot read writer type long — hint: "
	if !strings.HasPrefix(msgs[0], prefix) {
		t.Errorf("message = %q, want prefix %q", msgs[0], prefix)
	}
}
