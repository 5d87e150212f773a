package apicheck

import (
	"fmt"
	"go/types"
	"sort"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

const module = "github.com/eventline/eventline"

// framework packages: what other teams import.
func isFramework(path string) bool {
	return !strings.Contains(path, "/internal/") && !strings.HasPrefix(path, module+"/examples/") && !strings.HasPrefix(path, module+"/cmd/")
}

func load(t *testing.T) []*packages.Package {
	t.Helper()
	pkgs, err := packages.Load(&packages.Config{Mode: packages.NeedName | packages.NeedTypes | packages.NeedImports, Dir: "../.."}, module+"/...")
	if err != nil {
		t.Fatal(err)
	}
	var out []*packages.Package
	for _, p := range pkgs {
		for _, e := range p.Errors {
			t.Fatalf("%s: %v", p.PkgPath, e)
		}
		if isFramework(p.PkgPath) {
			out = append(out, p)
		}
	}
	if len(out) < 6 {
		t.Fatalf("found %d public packages, expected at least producer, relay, consumers, schemas, pipeline, migrate", len(out))
	}
	return out
}

// Every exported identifier of every public package: no internal/ type in
// its signature, fields, methods or embedded types.
func TestExportedAPINamesNoInternalType(t *testing.T) {
	for _, p := range load(t) {
		for _, bad := range leaks(p.Types, func(path string) bool {
			return strings.Contains(path, "/internal/") || strings.HasSuffix(path, "/internal")
		}) {
			t.Errorf("%s: %s", p.PkgPath, bad)
		}
	}
}

// The framework knows no domain: no public package imports the demo's
// packages (examples/...), so none can name their types. Nor do their
// tests: they prove the framework on internal/testevents, so that the
// demo's domain can change without weakening them.
func TestFrameworkImportsNoExample(t *testing.T) {
	pkgs, err := packages.Load(&packages.Config{Mode: packages.NeedName | packages.NeedImports, Tests: true, Dir: "../.."}, module+"/...")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range pkgs {
		if !isFramework(strings.TrimSuffix(p.PkgPath, "_test")) {
			continue
		}
		checked++
		for path := range p.Imports {
			if strings.HasPrefix(path, module+"/examples/") || strings.HasPrefix(path, module+"/internal/demo") {
				t.Errorf("%s imports %s", p.ID, path)
			}
		}
	}
	if checked < 12 {
		t.Fatalf("checked %d public packages and their tests, expected far more", checked)
	}
}

// The checker itself: it finds an internal type wherever an exported
// identifier can carry one.
func TestLeaksFindsEveryPlace(t *testing.T) {
	inner := types.NewPackage(module+"/internal/secret", "secret")
	secret := types.NewNamed(types.NewTypeName(0, inner, "Thing", nil), types.NewStruct(nil, nil), nil)
	pub := types.NewPackage(module+"/pub", "pub")
	add := func(name string, typ types.Type) {
		pub.Scope().Insert(types.NewTypeName(0, pub, name, typ))
	}
	field := func(name string, typ types.Type) *types.Var { return types.NewField(0, pub, name, typ, false) }
	add("Config", types.NewStruct([]*types.Var{field("Pipeline", types.NewPointer(secret))}, nil))
	add("hidden", types.NewStruct([]*types.Var{field("X", secret)}, nil))
	add("Fine", types.NewStruct([]*types.Var{field("x", secret)}, nil)) // unexported field
	sig := types.NewSignatureType(nil, nil, nil, types.NewTuple(types.NewParam(0, pub, "m", types.NewMap(types.Typ[types.String], types.NewSlice(secret)))), nil, false)
	pub.Scope().Insert(types.NewFunc(0, pub, "New", sig))
	pub.Scope().Insert(types.NewVar(0, pub, "Default", types.NewChan(types.SendRecv, secret)))
	got := leaks(pub, func(path string) bool { return strings.Contains(path, "/internal/") })
	want := []string{"Config.Pipeline mentions " + module + "/internal/secret.Thing", "Default mentions " + module + "/internal/secret.Thing", "New mentions " + module + "/internal/secret.Thing"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("leaks = %q\nwant %q", got, want)
	}
}

// leaks lists the exported identifiers of pkg whose API mentions a named
// type from a package bad says no to.
func leaks(pkg *types.Package, bad func(path string) bool) []string {
	var out []string
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		switch o := obj.(type) {
		case *types.TypeName:
			typ := o.Type()
			if named, ok := typ.(*types.Named); ok {
				walkType(named.Underlying(), name, bad, map[types.Type]bool{}, &out)
				for m := range named.Methods() {
					if m.Exported() {
						walkType(m.Type(), name+"."+m.Name(), bad, map[types.Type]bool{}, &out)
					}
				}
				if _, isPtr := typ.Underlying().(*types.Pointer); !isPtr {
					ms := types.NewMethodSet(types.NewPointer(typ))
					for sel := range ms.Methods() {
						if f := sel.Obj(); f.Exported() && f.Pkg() != pkg && len(sel.Index()) > 1 {
							walkType(f.Type(), name+"."+f.Name()+" (promoted)", bad, map[types.Type]bool{}, &out)
						}
					}
				}
			} else {
				walkType(typ, name, bad, map[types.Type]bool{}, &out)
			}
		default:
			walkType(obj.Type(), name, bad, map[types.Type]bool{}, &out)
		}
	}
	sort.Strings(out)
	return out
}

func walkType(t types.Type, where string, bad func(string) bool, seen map[types.Type]bool, out *[]string) {
	if seen[t] {
		return
	}
	seen[t] = true
	switch t := t.(type) {
	case *types.Named:
		if obj := t.Obj(); obj.Pkg() != nil && bad(obj.Pkg().Path()) {
			*out = append(*out, fmt.Sprintf("%s mentions %s.%s", where, obj.Pkg().Path(), obj.Name()))
		}
		for a := range t.TypeArgs().Types() {
			walkType(a, where, bad, seen, out)
		}
	case *types.Alias:
		walkType(types.Unalias(t), where, bad, seen, out)
	case *types.Pointer:
		walkType(t.Elem(), where, bad, seen, out)
	case *types.Slice:
		walkType(t.Elem(), where, bad, seen, out)
	case *types.Array:
		walkType(t.Elem(), where, bad, seen, out)
	case *types.Map:
		walkType(t.Key(), where, bad, seen, out)
		walkType(t.Elem(), where, bad, seen, out)
	case *types.Chan:
		walkType(t.Elem(), where, bad, seen, out)
	case *types.Signature:
		for v := range t.Params().Variables() {
			walkType(v.Type(), where, bad, seen, out)
		}
		for v := range t.Results().Variables() {
			walkType(v.Type(), where, bad, seen, out)
		}
	case *types.Struct:
		for f := range t.Fields() {
			if f.Exported() {
				w := where + "." + f.Name()
				walkType(f.Type(), w, bad, map[types.Type]bool{}, out)
			}
		}
	case *types.Interface:
		for m := range t.Methods() {
			if m.Exported() {
				walkType(m.Type(), where+"."+m.Name(), bad, map[types.Type]bool{}, out)
			}
		}
		for e := range t.EmbeddedTypes() {
			walkType(e, where, bad, seen, out)
		}
	}
}
