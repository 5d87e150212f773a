package shipping_test

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var updateReadme = flag.Bool("update-readme", false, "rewrite the README's excerpts from this module's code")

// The README's code is this module's code: each ```go block of the
// README that follows a line <!-- excerpt: PATH#NAME --> must be, byte for
// byte, the lines between "// README:begin NAME" and "// README:end NAME"
// in the Go file PATH (from the repository's root), less their common
// indentation and blank lines around them; and each marked region must be quoted once. So the README
// cannot show a call that does not compile or a step the program does
// not take. After changing a region: go test -run TestReadmeExcerpts
// -update-readme.
func TestReadmeExcerpts(t *testing.T) {
	const readmePath = "../../README.md"
	regions, err := markedRegions(".", "examples/external")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(readme), "\n")
	var out strings.Builder
	quoted := map[string]int{}
	for i := 0; i < len(lines); i++ {
		out.WriteString(lines[i])
		m := excerptLine.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		key := m[1]
		quoted[key]++
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "```go" {
			t.Errorf("README.md:%d: %s is not followed by a ```go block", i+1, key)
			continue
		}
		end := slices.IndexFunc(lines[i+2:], func(l string) bool { return strings.TrimSpace(l) == "```" })
		if end < 0 {
			t.Errorf("README.md:%d: the ```go block of %s does not end", i+2, key)
			continue
		}
		block := strings.Join(lines[i+2:i+2+end], "")
		at := i + 3  // the block's first line, from 1
		i += 2 + end // the closing fence
		want, ok := regions[key]
		switch {
		case !ok:
			t.Errorf("README.md:%d: %s: no such region (// README:begin NAME … // README:end NAME in the file)", at, key)
			want = block
		case block != want && !*updateReadme:
			t.Errorf("README.md:%d: the excerpt %s differs from the code: %s", at, key, firstDifference(block, want))
		}
		out.WriteString("```go\n" + want + lines[i])
	}
	for key := range regions {
		if quoted[key] != 1 {
			t.Errorf("%s is quoted %d times in README.md, want once (a line <!-- excerpt: %s --> before a ```go block)", key, quoted[key], key)
		}
	}
	if *updateReadme && out.String() != string(readme) {
		if err := os.WriteFile(readmePath, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("README.md rewritten from the code")
	}
}

var (
	excerptLine = regexp.MustCompile(`^<!-- excerpt: (\S+#\S+) -->$`)
	regionLine  = regexp.MustCompile(`^// README:(begin|end) (\S+)$`)
)

// markedRegions reads the regions marked in the Go files under dir, keyed
// PATH#NAME with PATH under prefix, each less its common indentation and
// ending in a line break.
func markedRegions(dir, prefix string) (map[string]string, error) {
	regions := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		open := map[string]int{} // name: the first line of its region
		lines := strings.SplitAfter(string(b), "\n")
		for i, l := range lines {
			m := regionLine.FindStringSubmatch(strings.TrimSpace(l))
			if m == nil {
				continue
			}
			key := filepath.ToSlash(filepath.Join(prefix, path)) + "#" + m[2]
			start, opened := open[m[2]]
			switch {
			case m[1] == "begin" && (opened || regions[key] != ""):
				return fmt.Errorf("%s:%d: region %s begins twice", path, i+1, m[2])
			case m[1] == "begin":
				open[m[2]] = i + 1
			case !opened:
				return fmt.Errorf("%s:%d: region %s ends before it begins", path, i+1, m[2])
			default:
				regions[key] = dedent(lines[start:i])
				delete(open, m[2])
			}
		}
		for name, start := range open {
			return fmt.Errorf("%s:%d: region %s does not end", path, start, name)
		}
		return nil
	})
	return regions, err
}

// dedent joins lines, less the indentation they all share and the blank
// lines that open or close them.
func dedent(lines []string) string {
	common, first := "", true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first {
			common, first = indent, false
		}
		for !strings.HasPrefix(indent, common) {
			common = common[:len(common)-1]
		}
	}
	for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	var b strings.Builder
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(strings.TrimPrefix(l, common))
	}
	return b.String()
}

// firstDifference says where got and want part: the line, and each side's
// text of it.
func firstDifference(got, want string) string {
	g, w := textLines(got), textLines(want)
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d of the block is %q, the code's is %q", i+1, g[i], w[i])
		}
	}
	if len(g) > len(w) {
		return fmt.Sprintf("the block goes on after the code's last line, with %q", g[len(w)])
	}
	return fmt.Sprintf("the block ends before the code's line %d, %q", len(g)+1, w[len(g)])
}

// textLines splits s after each line break.
func textLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
