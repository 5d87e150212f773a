package apicheck

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// deliberateAPI lists exported names that only the project's own tools
// use in the repository, kept on purpose: documented user API that no
// example happens to need (keyed "importpath.Name" or
// "importpath.Type.Member"). Each says for whom.
var deliberateAPI = map[string]string{
	module + "/relay.DefaultTransactionalID":     "operators granting a transactional relay's ACLs on a secured cluster (README, Transactional output)",
	module + "/relay.DefaultApplicationName":     "operators telling the relay's sessions apart in pg_stat_activity (docs/operations.md); bench e2e measures its backends by it",
	module + "/relay.PositionTopic":              "as DefaultTransactionalID: the topic the relay keeps its position on",
	module + "/consumers.Config.BatchHandler":    "handlers that apply a batch in one statement (doc'd on Config)",
	module + "/consumers.Config.ConsumerOpts":    "session timeouts, static membership, fetch sizes of the group's consumers",
	module + "/consumers.Event.AggregateID":      "the event's aggregate, from the relay's header",
	module + "/headers.AggregateID":              "the record headers are documented for any consumer (docs/architecture.md, Headers)",
	module + "/headers.AggregateType":            "as HeaderAggregateID",
	module + "/headers.AggregateVersion":         "as HeaderAggregateID",
	module + "/consumers.Stats":                  "what Group.Stats returns, for a service's own health checks",
	module + "/consumers.Stats.RetryLatenessP99": "how late retries run: the retry chain's health",
	module + "/consumers.Stats.RetryProcessed":   "records taken from retry topics",
	module + "/producer.Config.Mode":             "the producer's mode (poll or logical), the choice the README describes",
	module + "/producer.Mode":                    "as producer.Config.Mode",
	module + "/producer.ModeLogical":             "as producer.Config.Mode",
	module + "/producer.ModePoll":                "as producer.Config.Mode",
	module + "/producer.Message.EventID":         "a caller-chosen event id (idempotent appends)",
	module + "/consumers.Config.OnRevoked":       "observing partitions that leave a member (a service's own logs or metrics), with OnAssigned",
	module + "/consumers.Event.Headers":          "every header of the record as read, for handlers of other producers' records",
	module + "/consumers.Event.Partition":        "where the record was read, for handlers",
	module + "/consumers.Event.Timestamp":        "when the record was written, for handlers",
	module + "/consumers.Group.Ready":            "readiness; health.Probes calls it through health.Component",
	module + "/consumers.Stats.Protocol":         "which group protocol ProtocolAuto chose, for a service's logs",
}

// A public package exports nothing that only the project's own tools use.
// An exported identifier of a public package (package-level name, method or
// field of an exported type) fails when the project's own tools (the
// benchmark, the test kit, cmd/) reference it and no user does. Users are
// the other public packages, the examples (Example functions, examples/,
// the outside module in examples/external) and the product built on the
// public API: the CLI's subcommands, the dev stack, the demo. Tests are
// neither: they test the API whoever it is for. A name nobody references
// is not this check's business, nor is its own package's use of it.
func TestNoExportOnlyForOwnTools(t *testing.T) {
	uses := references(t)
	var bad []string
	for _, p := range load(t) {
		for _, d := range declared(p.Types) {
			key := p.PkgPath + "." + d.name
			u := uses[pos(p.Fset, d.obj)]
			if len(u.user) > 0 || len(u.tool) == 0 {
				continue
			}
			if _, ok := deliberateAPI[key]; ok {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s is used only by %s", key, strings.Join(u.tools(), ", ")))
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
	for key := range deliberateAPI {
		if !strings.HasPrefix(key, module+"/") {
			t.Errorf("deliberateAPI key %q: want importpath.Name", key)
		}
	}
}

// Who counts as a user: public packages, Examples, example programs, the
// outside module and the CLI; the benchmark, the test kit and cmd/ are the
// project's tools; the module's tests do not count.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		pkg, file, fn string
		user, counts  bool
	}{
		{module + "/deadletter", "scan.go", "Scan", true, true},
		{module + "/consumers_test", "doc_test.go", "Example_mux", true, true},
		{module + "/examples/orders", "main.go", "main", true, true},
		{"example.com/shipping", "shipping_test.go", "TestShipping", true, true},
		{module + "/consumers", "group_test.go", "TestGroup", false, false},
		{module + "/internal/bench", "bench_test.go", "TestSmoke", false, false},
		{module + "/internal/bench", "relay.go", "run", false, true},
		{module + "/internal/testkit", "fixture.go", "Setup", false, true},
		{module + "/internal/testevents", "testevents.go", "Catalog", false, false},
		{module + "/internal/cli", "deadletter.go", "runDLT", true, true},
		{module + "/cmd/eventline", "main.go", "main", false, true},
	} {
		if user, counts := classify(c.pkg, c.file, c.fn); user != c.user || counts != c.counts {
			t.Errorf("%s %s %s: user %v counts %v, want %v %v", c.pkg, c.file, c.fn, user, counts, c.user, c.counts)
		}
	}
}

// decl is one exported identifier of a public package.
type decl struct {
	name string // Name, Type.Method or Type.Field
	obj  types.Object
}

// declared lists pkg's exported package-level names and the exported
// methods and fields of its exported types.
func declared(pkg *types.Package) []decl {
	var out []decl
	for _, name := range pkg.Scope().Names() {
		obj := pkg.Scope().Lookup(name)
		if !obj.Exported() {
			continue
		}
		out = append(out, decl{name, obj})
		tn, ok := obj.(*types.TypeName)
		if !ok || tn.IsAlias() {
			continue
		}
		named, ok := tn.Type().(*types.Named)
		if !ok {
			continue
		}
		for m := range named.Methods() {
			if m.Exported() {
				out = append(out, decl{name + "." + m.Name(), m})
			}
		}
		if st, ok := named.Underlying().(*types.Struct); ok {
			for f := range st.Fields() {
				if f.Exported() && !f.Embedded() {
					out = append(out, decl{name + "." + f.Name(), f})
				}
			}
		}
	}
	return out
}

// where says who references a declaration: user code (public packages,
// examples) and the project's own tools and tests.
type where struct{ user, tool map[string]bool }

func (w where) tools() []string {
	var out []string
	for k := range w.tool {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pos identifies a declaration across the loads: a package type-checked
// from source and the same package imported from export data give two
// objects for one name, on one line (export data keeps no column).
func pos(fset *token.FileSet, obj types.Object) string {
	p := fset.Position(obj.Pos())
	return fmt.Sprintf("%s:%d:%s", p.Filename, p.Line, obj.Name())
}

// references maps each declaration's position to where the module (with
// its tests) and the outside module in examples/external reference it.
func references(t *testing.T) map[string]where {
	t.Helper()
	out := map[string]where{}
	for _, dir := range []string{"../..", "../../examples/external"} {
		cfg := &packages.Config{Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
			Dir: dir, Tests: true, Fset: token.NewFileSet()}
		pkgs, err := packages.Load(cfg, "./...")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkgs {
			if strings.HasSuffix(p.ID, ".test") {
				continue // the generated test main
			}
			for _, e := range p.Errors {
				t.Fatalf("%s: %v", p.ID, e)
			}
			for _, f := range p.Syntax {
				file := filepath.Base(cfg.Fset.Position(f.Pos()).Filename)
				for _, decl := range f.Decls {
					fn := ""
					if fd, ok := decl.(*ast.FuncDecl); ok {
						fn = fd.Name.Name
					}
					user, counts := classify(p.PkgPath, file, fn)
					if !counts {
						continue
					}
					ast.Inspect(decl, func(n ast.Node) bool {
						id, ok := n.(*ast.Ident)
						if !ok {
							return true
						}
						obj := p.TypesInfo.Uses[id]
						if obj == nil || obj.Pkg() == nil || !strings.HasPrefix(obj.Pkg().Path(), module) || obj.Pkg().Path() == strings.TrimSuffix(p.PkgPath, "_test") && !strings.HasSuffix(file, "_test.go") {
							return true // not ours, or its own package's code
						}
						k := pos(cfg.Fset, obj)
						w, ok := out[k]
						if !ok {
							w = where{map[string]bool{}, map[string]bool{}}
							out[k] = w
						}
						if user {
							w.user[p.PkgPath] = true
						} else {
							w.tool[strings.TrimPrefix(p.PkgPath, module+"/")+"/"+file] = true
						}
						return true
					})
				}
			}
		}
	}
	return out
}

// classify says whether a function (or, with fn "", a package-level
// declaration) in file of package path is user code (a public package's
// code, an Example, an example program, the outside module, whose tests
// are another team's code too, the CLI and the other internal features
// built on the public API) or the project's own tools (the benchmark, the
// test kit, cmd/); counts is false for the module's tests and for
// internal/testevents, the event domain they share.
func classify(path, file, fn string) (user, counts bool) {
	switch {
	case !strings.HasPrefix(path, module):
		return true, true
	case strings.HasPrefix(fn, "Example"):
		return true, true
	case strings.HasPrefix(path, module+"/examples/"):
		return true, true
	case strings.HasSuffix(file, "_test.go"), path == module+"/internal/testevents":
		return false, false // the module's tests, and the event domain only they use
	case path == module+"/internal/bench" || path == module+"/internal/testkit" || strings.HasPrefix(path, module+"/cmd/"):
		return false, true
	}
	return true, true
}
