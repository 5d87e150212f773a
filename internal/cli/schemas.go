package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/internal/schemacheck"
	"github.com/eventline/eventline/pipeline"
	"github.com/eventline/eventline/schemas/compat"
)

// runSchemas dispatches `eventline schemas compat|check|register`.
func runSchemas(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.Stderr, `usage: eventline schemas <command> [flags]

commands:
  compat    --level L NEW.avsc [OLDER.avsc …]   compare files (exit 0 compatible, 1 incompatible, 2 invalid input)
  check     --against git:REF | registry        CI check of schemas/ against git history or the live registry
  register                                      register schemas/ (idempotent), setting each subject's level first`)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	switch args[0] {
	case "compat":
		return runSchemasCompat(env, args[1:])
	case "check":
		return runSchemasCheck(ctx, env, args[1:])
	case "register":
		return runSchemasRegister(ctx, env, args[1:])
	}
	fmt.Fprintf(env.Stderr, "eventline schemas: unknown command %q (want compat, check or register)\n", args[0])
	return ExitUsage
}

func runSchemasCompat(env *Env, args []string) int {
	fs := newFlagSet(env, "schemas compat", "--level LEVEL NEW.avsc [OLDER.avsc …] (older versions oldest first)")
	level := fs.String("level", "BACKWARD", "compatibility level: "+strings.Join(pipeline.Levels, ", "))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() < 1 {
		fmt.Fprintln(env.Stderr, "eventline schemas compat: name the new schema file (and the older versions to compare with)")
		fs.Usage()
		return ExitUsage
	}
	lvl, err := compat.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline schemas compat:", err)
		return ExitUsage
	}
	files := fs.Args()
	parsed := make([]compatSchema, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(env.Stderr, "eventline schemas compat:", err)
			return ExitUsage
		}
		s, err := compat.Parse(string(b))
		if err != nil {
			fmt.Fprintf(env.Stderr, "eventline schemas compat: %s: %v\n", f, err)
			return ExitUsage
		}
		parsed = append(parsed, compatSchema{file: f, schema: s})
	}
	existing := make([]avro.Schema, 0, len(parsed)-1)
	for _, p := range parsed[1:] {
		existing = append(existing, p.schema)
	}
	res := compat.Check(lvl, parsed[0].schema, existing)
	if res.Compatible {
		fmt.Fprintf(env.Stdout, "compatible: %s under %s with %d older version(s)\n", files[0], lvl, len(existing))
		return ExitOK
	}
	fmt.Fprintf(env.Stdout, "incompatible: %s under %s (%d problem(s))\n", files[0], lvl, len(res.Problems))
	for _, p := range res.Problems {
		fmt.Fprintf(env.Stdout, "  %s (version %d) [%s] at %s: %s", parsed[p.Version].file, p.Version, p.Direction, p.Path, p.Message)
		if p.Hint != "" {
			fmt.Fprintf(env.Stdout, " — hint: %s", p.Hint)
		}
		fmt.Fprintln(env.Stdout)
	}
	return ExitFail
}

type compatSchema struct {
	file   string
	schema avro.Schema
}

func loadPipeline(env *Env, path string) (*pipeline.Pipeline, string, int) {
	p, err := pipeline.Load(path)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline:", err)
		return nil, "", ExitUsage
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline:", err)
		return nil, "", ExitUsage
	}
	return p, dir, -1
}

func runSchemasCheck(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "schemas check", "--against git:REF|registry [flags]")
	against := fs.String("against", "", "baseline: git:REF (every version of each schema file reachable from REF, offline) or registry (the live registry)")
	format := fs.String("format", "text", "output: "+strings.Join(schemacheck.Formats, ", "))
	cfgPath := fs.String("config", envOr(env, "EVENTLINE_CONFIG", pipeline.DefaultPath), "pipeline file (env EVENTLINE_CONFIG)")
	registry := fs.String("registry", env.Getenv("SCHEMA_REGISTRY_URL"), "schema registry URL for --against registry (env SCHEMA_REGISTRY_URL)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if !validFormat(*format) {
		fmt.Fprintf(env.Stderr, "eventline schemas check: unknown format %q (want %s)\n", *format, strings.Join(schemacheck.Formats, ", "))
		return ExitUsage
	}
	p, dir, code := loadPipeline(env, *cfgPath)
	if code >= 0 {
		return code
	}
	opts := schemacheck.Options{Pipeline: p, Dir: dir}

	var rep *schemacheck.Report
	var err error
	switch {
	case strings.HasPrefix(*against, "git:") && len(*against) > 4:
		rep, err = schemacheck.AgainstGit(ctx, opts, strings.TrimPrefix(*against, "git:"))
	case *against == "registry":
		if *registry == "" {
			fmt.Fprintln(env.Stderr, "eventline schemas check: --against registry needs --registry or SCHEMA_REGISTRY_URL")
			return ExitUsage
		}
		cl, cerr := registryFromEnv(env, *registry)
		if cerr != nil {
			fmt.Fprintln(env.Stderr, "eventline schemas check:", cerr)
			return ExitUsage
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		rep, err = schemacheck.AgainstRegistry(cctx, opts, cl, *registry)
	default:
		fmt.Fprintln(env.Stderr, "eventline schemas check: --against must be git:REF or registry")
		return ExitUsage
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline schemas check:", registryErr(env, err))
		if errors.Is(err, schemacheck.ErrGit) {
			return ExitUsage
		}
		return ExitFail
	}
	if err := rep.Write(env.Stdout, *format); err != nil {
		fmt.Fprintln(env.Stderr, "eventline schemas check:", err)
		return ExitFail
	}
	switch {
	case rep.Invalid():
		return ExitUsage
	case !rep.OK():
		return ExitFail
	}
	return ExitOK
}

func validFormat(f string) bool {
	for _, v := range schemacheck.Formats {
		if v == f {
			return true
		}
	}
	return false
}

func runSchemasRegister(ctx context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "schemas register", "[flags]")
	cfgPath := fs.String("config", envOr(env, "EVENTLINE_CONFIG", pipeline.DefaultPath), "pipeline file (env EVENTLINE_CONFIG)")
	registry := fs.String("registry", env.Getenv("SCHEMA_REGISTRY_URL"), "schema registry URL (env SCHEMA_REGISTRY_URL)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *registry == "" {
		fmt.Fprintln(env.Stderr, "eventline schemas register: needs --registry or SCHEMA_REGISTRY_URL")
		return ExitUsage
	}
	p, dir, code := loadPipeline(env, *cfgPath)
	if code >= 0 {
		return code
	}
	cl, err := registryFromEnv(env, *registry)
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline schemas register:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	regs, err := schemacheck.Register(ctx, schemacheck.Options{Pipeline: p, Dir: dir}, cl)
	for _, r := range regs {
		fmt.Fprintf(env.Stdout, "%s\tversion %d\tid %d\t%s\n", r.Subject, r.Version, r.ID, r.Level)
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "eventline schemas register:", registryErr(env, err))
		if errors.Is(err, schemacheck.ErrInvalidSchema) {
			return ExitUsage
		}
		return ExitFail
	}
	return ExitOK
}
