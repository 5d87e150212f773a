package apicheck

import (
	"go/ast"
	"go/doc"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/tools/go/packages"
)

// Godoc is what another team reads: it must not send them into our source.
// In the package documentation and the documentation of every exported
// identifier of a public package, no source file name ("errors.go") and no
// unexported identifier of that package: a camelCase one anywhere
// ("applierFor"), a one-word one where it reads as code ("unrecoverable(",
// "see unrecoverable").
func TestGodocNamesNoSourceFileOrUnexportedIdentifier(t *testing.T) {
	pkgs, err := packages.Load(&packages.Config{Mode: packages.NeedName | packages.NeedFiles | packages.NeedCompiledGoFiles | packages.NeedSyntax, Dir: "../.."}, module+"/...")
	if err != nil {
		t.Fatal(err)
	}
	fileName := regexp.MustCompile(`\b[a-z0-9_]+\.go\b`)
	checked := 0
	for _, p := range pkgs {
		if !isFramework(p.PkgPath) || len(p.Syntax) == 0 {
			continue
		}
		checked++
		unexported := unexportedNames(p.Syntax)
		for _, d := range godocs(p) {
			if ms := fileName.FindAllString(d.text, -1); len(ms) > 0 {
				t.Errorf("%s: the godoc of %s names the source files %s", p.PkgPath, d.of, strings.Join(ms, ", "))
			}
			for _, name := range unexported {
				if mentions(d.text, name) {
					t.Errorf("%s: the godoc of %s names the unexported %s", p.PkgPath, d.of, name)
				}
			}
		}
	}
	if checked < 6 {
		t.Fatalf("checked %d public packages, expected at least 6", checked)
	}
}

type godocText struct{ of, text string }

// godocs returns the package documentation and that of every exported
// declaration (and exported field and method) of p's non-test files.
func godocs(p *packages.Package) []godocText {
	var files []*ast.File
	for i, f := range p.Syntax {
		if !strings.HasSuffix(p.CompiledGoFiles[i], "_test.go") {
			files = append(files, f)
		}
	}
	dp, err := doc.NewFromFiles(p.Fset, files, p.PkgPath)
	if err != nil {
		return nil
	}
	out := []godocText{{"the package", dp.Doc}}
	add := func(of, text string) {
		if text != "" {
			out = append(out, godocText{of, text})
		}
	}
	values := func(vs []*doc.Value) {
		for _, v := range vs {
			add(strings.Join(v.Names, ", "), v.Doc)
			for _, spec := range v.Decl.Specs {
				if vs, ok := spec.(*ast.ValueSpec); ok && vs.Doc != nil {
					add(vs.Names[0].Name, vs.Doc.Text())
				}
			}
		}
	}
	funcs := func(fs []*doc.Func) {
		for _, f := range fs {
			add(f.Name, f.Doc)
		}
	}
	values(dp.Consts)
	values(dp.Vars)
	funcs(dp.Funcs)
	for _, ty := range dp.Types {
		add(ty.Name, ty.Doc)
		values(ty.Consts)
		values(ty.Vars)
		funcs(ty.Funcs)
		funcs(ty.Methods)
		for _, spec := range ty.Decl.Specs {
			ts, ok := spec.(*ast.TypeSpec)
			if !ok {
				continue
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, f := range st.Fields.List {
				if f.Doc == nil || len(f.Names) == 0 || !f.Names[0].IsExported() {
					continue
				}
				add(ty.Name+"."+f.Names[0].Name, f.Doc.Text())
			}
		}
	}
	return out
}

// unexportedNames are the package-level unexported identifiers of files
// (functions, types, variables, constants; methods too), sorted.
func unexportedNames(files []*ast.File) []string {
	set := map[string]bool{}
	add := func(id *ast.Ident) {
		if id != nil && id.Name != "_" && !id.IsExported() && len(id.Name) > 2 {
			set[id.Name] = true
		}
	}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				add(d.Name)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						add(s.Name)
					case *ast.ValueSpec:
						for _, n := range s.Names {
							add(n)
						}
					}
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// mentions reports whether text names the identifier name as code: a
// camelCase name as a whole word anywhere; a one-word name only as a call
// ("name(") or a reference ("see name").
func mentions(text, name string) bool {
	camel := strings.IndexFunc(name, unicode.IsUpper) > 0
	for i := 0; ; {
		j := strings.Index(text[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		i = end
		if start > 0 && isWord(rune(text[start-1])) || end < len(text) && isWord(rune(text[end])) {
			continue
		}
		if camel || end < len(text) && text[end] == '(' || strings.HasSuffix(strings.TrimRightFunc(text[:start], func(r rune) bool { return unicode.IsSpace(r) || r == '(' }), "see") {
			return true
		}
	}
}

func isWord(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// The rule itself: what counts as naming an identifier.
func TestMentions(t *testing.T) {
	for _, c := range []struct {
		text, name string
		want       bool
	}{
		{"built by applierFor from the config", "applierFor", true},
		{"the applierForX helper", "applierFor", false},
		{"(see unrecoverable)", "unrecoverable", true},
		{"see\nunrecoverable for the list", "unrecoverable", true},
		{"errors that are unrecoverable end Run", "unrecoverable", false},
		{"it calls record(o) first", "record", true},
		{"the record is parked", "record", false},
	} {
		if got := mentions(c.text, c.name); got != c.want {
			t.Errorf("mentions(%q, %q) = %v, want %v", c.text, c.name, got, c.want)
		}
	}
}
