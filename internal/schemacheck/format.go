package schemacheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Formats of Write.
var Formats = []string{"text", "json", "github"}

// Write prints the report in format: text (for people), json (one object),
// or github (GitHub Actions workflow commands: an annotation per finding).
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		out := struct {
			OK bool `json:"ok"`
			*Report
		}{r.OK(), r}
		if out.Subjects == nil {
			out.Subjects = []Subject{}
		}
		if out.Findings == nil {
			out.Findings = []Finding{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "github":
		for _, f := range r.Findings {
			title := map[string]string{KindIncompatible: "Incompatible schema change", KindDeleted: "Schema deleted", KindInvalid: "Invalid schema"}[f.Kind]
			props := "title=" + ghProp(title)
			if f.File != "" {
				props = "file=" + ghProp(f.File) + "," + props
			}
			fmt.Fprintf(w, "::error %s::%s\n", props, ghData(f.line()))
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "::notice title=eventline schemas::%s\n", ghData(n))
		}
		fmt.Fprintln(w, r.summary())
		return nil
	case "text", "":
		for _, f := range r.Findings {
			fmt.Fprintln(w, f.line())
		}
		for _, n := range r.Notes {
			fmt.Fprintln(w, "note:", n)
		}
		fmt.Fprintln(w, r.summary())
		return nil
	}
	return fmt.Errorf("unknown format %q: want %s", format, strings.Join(Formats, ", "))
}

// line renders a finding on one line: file, subject, level, version and
// location first, so a reader sees where before what.
func (f Finding) line() string {
	var b strings.Builder
	if f.File != "" {
		b.WriteString(f.File + ": ")
	}
	if f.Subject != "" {
		fmt.Fprintf(&b, "subject %s", f.Subject)
		if f.Level != "" {
			fmt.Fprintf(&b, " (%s)", f.Level)
		}
		b.WriteString(": ")
	}
	switch f.Kind {
	case KindIncompatible:
		b.WriteString("incompatible")
		if f.Version > 0 {
			fmt.Fprintf(&b, " with version %d", f.Version)
			if f.Commit != "" {
				fmt.Fprintf(&b, " (commit %.12s)", f.Commit)
			}
		}
		if f.Direction != "" {
			fmt.Fprintf(&b, " [%s]", f.Direction)
		}
		switch {
		case f.RefPath != "": // the path through the shared types
			fmt.Fprintf(&b, " at %s", f.RefPath)
		case f.Location != "":
			fmt.Fprintf(&b, " at %s", f.Location)
		}
		b.WriteString(": ")
	case KindDeleted:
		b.WriteString("deleted: ")
	case KindInvalid:
		b.WriteString("invalid: ")
	}
	b.WriteString(f.Message)
	if f.Hint != "" {
		b.WriteString(" — hint: " + f.Hint)
	}
	return b.String()
}

func (r *Report) summary() string {
	n, fresh := 0, 0
	for _, s := range r.Subjects {
		n++
		if s.New {
			fresh++
		}
	}
	verdict := "OK"
	if !r.OK() {
		verdict = fmt.Sprintf("FAILED: %d problem(s)", len(r.Findings))
	}
	return fmt.Sprintf("schemas check against %s: %d subject(s) checked (%d new): %s", r.Against, n, fresh, verdict)
}

// GitHub workflow-command escaping (the runner's documented rules).
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
