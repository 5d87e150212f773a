package testkit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// RequirePublicAPI fails t when an exported declaration of the package in
// dir (its non-test files) mentions a type or value of an internal/
// package: another module could not write that call or field, as happened
// with producer.Config.Pipeline (then an internal/config type). It walks
// exported functions, methods of exported types, exported types (their
// exported fields and methods), variables and constants.
func RequirePublicAPI(t testing.TB, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		internal := internalImports(f)
		if len(internal) == 0 {
			continue
		}
		report := func(decl string, n ast.Node) {
			ast.Inspect(n, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok {
					if path, ok := internal[id.Name]; ok {
						t.Errorf("%s: exported %s mentions %s.%s of %s, which other modules cannot import",
							fset.Position(sel.Pos()), decl, id.Name, sel.Sel.Name, path)
					}
				}
				return true
			})
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() || (d.Recv != nil && !exportedReceiver(d.Recv)) {
					continue
				}
				report(d.Name.Name, d.Type)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							report(s.Name.Name, exportedPart(s))
						}
					case *ast.ValueSpec:
						for i, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							if s.Type != nil {
								report(n.Name, s.Type)
							} else if i < len(s.Values) {
								report(n.Name, s.Values[i])
							}
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
}

// internalImports maps the names under which f imports internal packages
// to their paths.
func internalImports(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil || !(strings.Contains(path, "/internal/") || strings.HasSuffix(path, "/internal") || strings.HasPrefix(path, "internal/")) {
			continue
		}
		name := path[strings.LastIndexByte(path, '/')+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		out[name] = path
	}
	return out
}

func exportedReceiver(recv *ast.FieldList) bool {
	if len(recv.List) == 0 {
		return false
	}
	typ := recv.List[0].Type
	for {
		switch x := typ.(type) {
		case *ast.StarExpr:
			typ = x.X
		case *ast.IndexExpr:
			typ = x.X
		case *ast.IndexListExpr:
			typ = x.X
		case *ast.Ident:
			return x.IsExported()
		default:
			return false
		}
	}
}

// exportedPart is the part of a type declaration other modules see: a
// struct without its unexported fields.
func exportedPart(s *ast.TypeSpec) ast.Node {
	st, ok := s.Type.(*ast.StructType)
	if !ok || st.Fields == nil {
		return s
	}
	fields := &ast.FieldList{}
	for _, f := range st.Fields.List {
		if len(f.Names) == 0 { // embedded: exported when its type name is
			fields.List = append(fields.List, f)
			continue
		}
		for _, n := range f.Names {
			if n.IsExported() {
				fields.List = append(fields.List, f)
				break
			}
		}
	}
	return &ast.TypeSpec{Name: s.Name, TypeParams: s.TypeParams, Type: &ast.StructType{Fields: fields}}
}
