package compat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// javaVerdict is one output line of scripts/avrodiff/AvroDiff.java.
type javaVerdict struct {
	ID          string   `json:"id"`
	Verdict     string   `json:"verdict"`
	Kinds       []string `json:"kinds"`
	Locations   []string `json:"locations"`
	Messages    []string `json:"messages"`
	ReaderError string   `json:"reader_error"`
	WriterError string   `json:"writer_error"`
	Error       string   `json:"error"`
}

// TestDifferentialAgainstApacheAvro holds CheckPair to Apache Avro Java's
// verdicts over the whole corpus (see corpus_test.go). It needs java and mvn;
// scripts/avrodiff/run.sh fetches the Avro jars on first use.
//
// It fails on any verdict that differs, on a pair Java refuses to judge that
// we do not report as AmbiguousField, and on a difference in the kinds or
// locations reported that is not explained by remembered results (Java
// reports a remembered pair's problems at the location of its first visit; we
// report each where it is met).
func TestDifferentialAgainstApacheAvro(t *testing.T) {
	t.Parallel()
	start := time.Now()
	hand := loadHandWritten(t)
	gen := generated(t)
	corpus := append(slices.Clone(hand), gen...)
	ids := map[string]bool{}
	for _, p := range corpus {
		if ids[p.ID] {
			t.Fatalf("duplicate corpus id %q", p.ID)
		}
		ids[p.ID] = true
	}
	if len(corpus) < 300 {
		t.Fatalf("corpus has %d pairs, want at least 300", len(corpus))
	}

	verdicts := runAvroJava(t, corpus)

	var (
		compared, agreeLoc, memoLoc                          int
		bothReject, javaOnlyReject, goOnlyReject, javaThrows int
		disagreements, locDiffs, parseDiffs                  []string
		withRefs                                             int
		refVerdicts                                          = map[string]int{}
	)
	for _, p := range corpus {
		jv, ok := verdicts[p.ID]
		if !ok {
			t.Errorf("%s: no verdict from Avro Java", p.ID)
			continue
		}
		reader, rerr := parseWithRefs(p.Reader, p.ReaderRefs)
		writer, werr := parseWithRefs(p.Writer, p.WriterRefs)
		if len(p.ReaderRefs)+len(p.WriterRefs) > 0 {
			withRefs++
		}
		goRejects := rerr != nil || werr != nil
		javaRejects := jv.Verdict == "PARSE_ERROR"
		if (goRejects || javaRejects) && !strings.HasPrefix(p.ID, "parse/") {
			// Only testdata/pairs/parse.json is about parsing; a rejected
			// pair elsewhere would quietly drop out of the comparison.
			t.Errorf("%s: meant to parse, but Java says %q %q and Go %v", p.ID, jv.ReaderError, jv.WriterError, firstErr(rerr, werr))
		}
		switch {
		case goRejects && javaRejects:
			bothReject++
			continue
		case javaRejects:
			javaOnlyReject++
			parseDiffs = append(parseDiffs, fmt.Sprintf("%s: only Java rejects: %s", p.ID, strings.Join(nonEmpty(jv.ReaderError, jv.WriterError), "; ")))
			continue
		case goRejects:
			goOnlyReject++
			parseDiffs = append(parseDiffs, fmt.Sprintf("%s: only hamba rejects: %v", p.ID, firstErr(rerr, werr)))
			continue
		}

		c := newChecker()
		got := c.report(c.run(reader, writer))
		if jv.Verdict == "ERROR" {
			javaThrows++
			if !slices.ContainsFunc(got, func(i Incompatibility) bool { return i.Kind == AmbiguousField }) {
				disagreements = append(disagreements, fmt.Sprintf("%s: Java threw (%s) but Go reports %s",
					p.ID, jv.Error, describeProblems(got)))
			}
			continue
		}
		compared++
		if len(p.ReaderRefs)+len(p.WriterRefs) > 0 {
			refVerdicts[jv.Verdict]++
		}
		goVerdict := "COMPATIBLE"
		if len(got) > 0 {
			goVerdict = "INCOMPATIBLE"
		}
		if goVerdict != jv.Verdict {
			disagreements = append(disagreements, fmt.Sprintf("%s: Java %s, Go %s; Java: %s; Go: %s",
				p.ID, jv.Verdict, goVerdict, describeJava(jv), describeProblems(got)))
			continue
		}

		goFound := make([]string, len(got))
		for i, inc := range got {
			goFound[i] = string(inc.Kind) + " at " + inc.Location
		}
		javaFound := make([]string, len(jv.Kinds))
		for i := range jv.Kinds {
			javaFound[i] = jv.Kinds[i] + " at " + jv.Locations[i]
		}
		if sameItems(goFound, javaFound) {
			agreeLoc++
		} else if c.reusedIncompatible > 0 && sameItems(kindsOf(got), jv.Kinds) {
			memoLoc++
			t.Logf("%s: locations differ where Java reused a remembered result: Java %v, Go %v", p.ID, javaFound, goFound)
		} else {
			locDiffs = append(locDiffs, fmt.Sprintf("%s: Java %s; Go %s", p.ID, describeJava(jv), describeProblems(got)))
		}
	}

	t.Logf("corpus: %d pairs (%d hand-written, %d generated)", len(corpus), len(hand), len(gen))
	t.Logf("pairs with references (shared named types parsed first): %d; Java's verdicts on them: %v", withRefs, refVerdicts)
	t.Logf("verdicts compared: %d; Java threw (AmbiguousField in Go): %d", compared, javaThrows)
	t.Logf("parse: both reject %d, only Java rejects %d, only hamba rejects %d", bothReject, javaOnlyReject, goOnlyReject)
	for _, d := range parseDiffs {
		t.Logf("  parse difference: %s", d)
	}
	t.Logf("kinds and locations: %d agree exactly, %d differ only through Java's remembered results, %d differ otherwise",
		agreeLoc, memoLoc, len(locDiffs))
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))

	for _, d := range disagreements {
		t.Errorf("verdict disagreement: %s", d)
	}
	for _, d := range locDiffs {
		t.Errorf("kind/location disagreement: %s", d)
	}
}

// runAvroJava writes the corpus as JSON lines, runs scripts/avrodiff/run.sh
// over it once, and returns Java's verdicts by pair id.
func runAvroJava(t *testing.T, corpus []corpusPair) map[string]javaVerdict {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "corpus.jsonl"), filepath.Join(dir, "verdicts.jsonl")

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, p := range corpus {
		if err := enc.Encode(corpusPair{ID: p.ID, Reader: p.Reader, Writer: p.Writer, ReaderRefs: p.ReaderRefs, WriterRefs: p.WriterRefs}); err != nil {
			t.Fatalf("error encoding corpus: %v", err)
		}
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		t.Fatalf("error writing corpus: %v", err)
	}

	// The first run downloads the jars from Maven Central; later runs only
	// start a JVM.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "avrodiff", "run.sh"), in, out)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("error running Avro Java (scripts/avrodiff/run.sh): %v\n%s", err, stderr.String())
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("error opening Avro Java's verdicts: %v", err)
	}
	defer f.Close()
	verdicts := map[string]javaVerdict{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var v javaVerdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("error decoding Avro Java verdict %q: %v", sc.Text(), err)
		}
		verdicts[v.ID] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("error reading Avro Java's verdicts: %v", err)
	}
	return verdicts
}

// repoRoot finds the module root from the package directory, where go test
// runs.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("error getting working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// sameItems reports whether a and b hold the same strings, as many times
// each, in any order.
func sameItems(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func kindsOf(incs []Incompatibility) []string {
	out := make([]string, len(incs))
	for i, inc := range incs {
		out[i] = string(inc.Kind)
	}
	return out
}

func describeJava(v javaVerdict) string {
	parts := make([]string, len(v.Kinds))
	for i := range v.Kinds {
		parts[i] = fmt.Sprintf("%s at %s (%s)", v.Kinds[i], v.Locations[i], v.Messages[i])
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func describeProblems(incs []Incompatibility) string {
	parts := make([]string, len(incs))
	for i, inc := range incs {
		parts[i] = fmt.Sprintf("%s at %s (%s)", inc.Kind, inc.Location, inc.Message)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func nonEmpty(ss ...string) []string {
	return slices.DeleteFunc(ss, func(s string) bool { return s == "" })
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// parseWithRefs parses a side of a pair after the schemas it references.
func parseWithRefs(text json.RawMessage, refs []json.RawMessage) (avro.Schema, error) {
	deps := make([]string, len(refs))
	for i, r := range refs {
		deps[i] = string(r)
	}
	return ParseWith(string(text), deps...)
}
