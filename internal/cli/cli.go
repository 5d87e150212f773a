// Package cli implements the eventline command line. Main dispatches to one
// function per subcommand; each parses its own flags (with environment
// fallbacks) and delegates to a library package.
//
// Exit codes: 0 success, 1 failure, 2 bad usage (unknown command, bad flag).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) int
}

func commands() []command {
	return []command{
		{name: "dev", summary: "run the embedded stack (Kafka, schema registry, PostgreSQL) until interrupted", run: runDev},
		{name: "demo", summary: "run the pipeline end to end on the embedded stack (or the one the environment names)", run: runDemo},
		{name: "version", summary: "print the version", run: runVersion},
		{name: "schemas", summary: "compare, check (CI) and register Avro schemas", run: runSchemas},
		{name: "migrate", summary: "create or upgrade the outbox and consumer tables", run: runMigrate},
		{name: "relay", summary: "run the outbox relay; `relay parked list|requeue` for parked rows", run: runRelay},
		{name: "dlt", summary: "dead letters: dlt list | show POSITION | replay --group G …", run: runDLT},
		{name: "bench", summary: "measure throughput and latency: bench relay | append | consume | e2e", run: runBench},
	}
}

// Env is what a subcommand sees of the process: its streams, environment
// and logger. Tests fill it directly.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Logger         *slog.Logger
}

// Main runs the CLI with args (without the program name) and returns the
// exit code. SIGINT and SIGTERM cancel the context the subcommand runs with.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// EVENTLINE_CPUPROFILE=file writes a CPU profile of the whole command
	// (for `go tool pprof`): how the benchmark figures are explained.
	if path := os.Getenv("EVENTLINE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(stderr, "eventline: EVENTLINE_CPUPROFILE:", err)
			return ExitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "eventline: EVENTLINE_CPUPROFILE:", err)
			return ExitUsage
		}
		defer pprof.StopCPUProfile()
	}
	return Run(ctx, args, &Env{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
}

// Run is Main with the context and environment given.
func Run(ctx context.Context, args []string, env *Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Logger == nil {
		level, err := parseLevel(env.Getenv("EVENTLINE_LOG_LEVEL"))
		if err != nil {
			fmt.Fprintln(env.Stderr, "eventline:", err)
			return ExitUsage
		}
		env.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		return c.run(ctx, env, args[1:])
	}
	fmt.Fprintf(env.Stderr, "eventline: unknown command %q\n\n", args[0])
	usage(env.Stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: eventline <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'eventline <command> -h' for a command's flags. EVENTLINE_LOG_LEVEL=debug|info|warn|error sets the log level.")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("EVENTLINE_LOG_LEVEL: %w", err)
	}
	return l, nil
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(env *Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("eventline "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: eventline %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and returns the exit code to use when parsing failed,
// or -1 to continue. Positional arguments are refused: no subcommand so far
// takes any.
func parse(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	return -1
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Version is set at build time with -ldflags "-X .../internal/cli.Version=…".
var Version = "dev"

func runVersion(_ context.Context, env *Env, args []string) int {
	fs := newFlagSet(env, "version", "")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	fmt.Fprintln(env.Stdout, "eventline", Version)
	return ExitOK
}
