package bench

// The consumer group of bench e2e runs in a process of its own, so that
// its CPU is measured apart from the harness's (the writers, the tailing
// consumer, the bookkeeping) and the harness does not share its scheduler.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/consumers"
	"github.com/eventline/eventline/examples/events"
	"github.com/eventline/eventline/internal/hook"
	"github.com/eventline/eventline/schemas"
)

// E2EGroupSpec is what bench e2e tells its group process, as JSON in
// E2EGroupSpecEnv (not argv: it holds the database URL).
type E2EGroupSpec struct {
	Env        Env    `json:"env"`
	Schema     string `json:"schema"`
	Topic      string `json:"topic"`
	Group      string `json:"group"`
	Applied    string `json:"applied"` // table of the handler's effects, in Schema
	Events     int    `json:"events"`  // distinct events to apply before saying "applied"
	Partitions int    `json:"partitions"`
}

// E2EGroupSpecEnv names the environment variable holding the spec.
const E2EGroupSpecEnv = "EVENTLINE_BENCH_E2E_GROUP_SPEC"

// groupAppName is the group process's application_name: its PostgreSQL
// backends are measured as the group's.
const groupAppName = "eventline-bench-group"

// e2eGroupLine is a line the group process prints: "assigned" (the group
// has its partitions), "applied" (Events distinct events applied), then,
// once its standard input closes, "report" with when each event's apply
// began and when its transaction had committed (Unix nanoseconds; one
// machine, one clock).
type e2eGroupLine struct {
	Ev       string           `json:"ev"`
	Applying map[string]int64 `json:"applying,omitempty"`
	Applied  map[string]int64 `json:"applied,omitempty"`
}

// E2EGroup is bench e2e's group process: it applies spec.Topic's events
// (one INSERT each, beside the dedupe row) until stdin closes, reporting on
// out.
func E2EGroup(ctx context.Context, spec E2EGroupSpec, stdin io.Reader, out io.Writer, log *slog.Logger) error {
	pool, serde, err := spec.Env.consumerDeps(ctx, int32(spec.Partitions+2), groupAppName) // every partition in flight, the dedupe expiry
	if err != nil {
		return err
	}
	defer pool.Close()
	var outMu sync.Mutex
	say := func(l e2eGroupLine) {
		outMu.Lock()
		defer outMu.Unlock()
		_ = json.NewEncoder(out).Encode(l)
	}
	var mu sync.Mutex
	applying := map[string]int64{}
	applied := map[string]int64{}
	table := pgx.Identifier{spec.Schema, spec.Applied}.Sanitize()
	var assigned sync.Once
	g, err := consumers.New(consumers.Config{
		Group: spec.Group, Topics: []string{spec.Topic}, Brokers: spec.Env.Brokers, KafkaOpts: spec.Env.KafkaOpts,
		DB: pool, Schema: spec.Schema, Serde: serde, Events: []schemas.Event{&events.OrderCreated{}},
		CreateTopics: true, Logger: log,
		Handler: func(ctx context.Context, tx pgx.Tx, ev *consumers.Event) error {
			now := time.Now().UnixNano()
			id := ev.ID.String()
			mu.Lock()
			if applying[id] == 0 {
				applying[id] = now
			}
			mu.Unlock()
			// [16]byte, not uuid.UUID: pgx sends raw bytes as a uuid,
			// where uuid.UUID takes its text Valuer, a failed binary
			// encode and a parse (an eighth of this process's CPU).
			_, err := tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1, $2)`, [16]byte(ev.ID), ev.Payload.(*events.OrderCreated).TotalMinor)
			return err
		},
		OnAssigned: func(map[string][]int32) { assigned.Do(func() { say(e2eGroupLine{Ev: "assigned"}) }) },
	})
	if err != nil {
		return err
	}
	var all sync.Once
	hook.AfterApply(g, func(results []hook.Result) {
		now := time.Now().UnixNano()
		mu.Lock()
		for _, r := range results {
			if id := eventID(r.Record); r.Outcome == hook.Applied && applied[id] == 0 {
				applied[id] = now
			}
		}
		n := len(applied)
		mu.Unlock()
		if n >= spec.Events {
			all.Do(func() { say(e2eGroupLine{Ev: "applied"}) })
		}
	})
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, stdin) // the parent closes it: stop
		stop()
	}()
	if err := g.Run(gctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	say(e2eGroupLine{Ev: "report", Applying: applying, Applied: applied})
	return nil
}

// groupProcess is bench e2e's running group process.
type groupProcess struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	assigned chan struct{}
	applied  chan struct{}
	report   chan e2eGroupLine
	exited   chan struct{} // closed when the process has exited, with err set
	err      error
}

// startGroupProcess starts the group process with spec (command: default
// this executable's hidden `bench e2e-group`).
func startGroupProcess(ctx context.Context, command []string, spec E2EGroupSpec) (*groupProcess, error) {
	cmd, err := childCommand(ctx, command, "e2e-group", E2EGroupSpecEnv, spec)
	if err != nil {
		return nil, err
	}
	// EVENTLINE_GROUP_CPUPROFILE profiles the group process alone.
	if p := os.Getenv("EVENTLINE_GROUP_CPUPROFILE"); p != "" {
		cmd.Env = append(cmd.Env, "EVENTLINE_CPUPROFILE="+p)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the group process: %w", err)
	}
	p := &groupProcess{cmd: cmd, stdin: in, assigned: make(chan struct{}), applied: make(chan struct{}),
		report: make(chan e2eGroupLine, 1), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 256<<20) // the report holds two times per event
		for sc.Scan() {
			var l e2eGroupLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Ev {
			case "assigned":
				close(p.assigned)
			case "applied":
				close(p.applied)
			case "report":
				p.report <- l
			}
		}
		p.err = cmd.Wait()
		if p.err == nil {
			p.err = errors.New("the group process exited")
		}
		close(p.exited)
	}()
	return p, nil
}

// wait waits for ch (a line of the group process), failing if the process
// exits first or ctx ends.
func (p *groupProcess) wait(ctx context.Context, ch chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-p.exited:
		return fmt.Errorf("bench e2e: group process, before %s: %w", what, p.err)
	case <-ctx.Done():
		return fmt.Errorf("bench e2e: group process, waiting for %s: %w", what, ctx.Err())
	}
}

// finish closes the group's stdin (it stops) and returns its report.
func (p *groupProcess) finish(ctx context.Context) (e2eGroupLine, error) {
	_ = p.stdin.Close()
	select {
	case l := <-p.report:
		return l, nil
	case <-p.exited:
		select {
		case l := <-p.report: // printed just before it exited
			return l, nil
		default:
		}
		return e2eGroupLine{}, fmt.Errorf("bench e2e: group process gave no report: %w", p.err)
	case <-ctx.Done():
		return e2eGroupLine{}, fmt.Errorf("bench e2e: waiting for the group's report: %w", ctx.Err())
	}
}

// stop ends the group process if it still runs (after finish it exits on
// its own): SIGTERM, SIGKILL after 30 s.
func (p *groupProcess) stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
