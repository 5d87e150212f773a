package main_test

// These tests run the real eventline binary as a child process: what they
// prove (signals, orphans, restarts) cannot be shown in-process.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eventline/eventline/internal/testkit"
)

var binary string

func TestMain(m *testing.M) {
	path, cleanup, err := testkit.BuildEventline(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = path
	testkit.Main(m, cleanup)
}

type devProc struct {
	cmd     *exec.Cmd
	env     map[string]string
	pgPID   int
	stderr  *testkit.SyncBuffer
	exited  chan struct{}
	waitErr error
}

// startDev runs `eventline dev` and returns once it has printed its three
// KEY=value lines (which it does only when every service is ready).
func startDev(t *testing.T, dataDir string, extra ...string) *devProc {
	t.Helper()
	args := append([]string{"dev", "--data-dir", dataDir, "--kafka-port", "-1", "--registry-port", "-1"}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = testkit.WithoutEnv(os.Environ(), "DATABASE_URL")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &devProc{cmd: cmd, env: map[string]string{}, stderr: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	timeout := time.After(2 * time.Minute)
	for len(p.env) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("dev exited before printing its addresses:\n%s", p.stderr)
			}
			k, v, found := strings.Cut(l, "=")
			if !found {
				t.Fatalf("unexpected stdout line %q", l)
			}
			p.env[k] = v
		case <-timeout:
			t.Fatalf("dev printed no addresses within 2 minutes:\n%s", p.stderr)
		}
	}
	go func() { // drain
		for range lines {
		}
	}()
	pid, err := readPostmasterPID(filepath.Join(dataDir, "pg"))
	if err != nil {
		t.Fatal(err)
	}
	p.pgPID = pid
	if !alive(pid) {
		t.Fatalf("postmaster %d is not running", pid)
	}
	return p
}

func (p *devProc) brokers() []string { return strings.Split(p.env["KAFKA_BROKERS"], ",") }

func (p *devProc) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Fatalf("dev did not exit within a minute of the signal:\n%s", p.stderr)
	}
}

// SIGTERM stops every service and leaves no process behind; restarting on the
// same data dir finds the topic, its records and the table again.
func TestDevSIGTERMAndRestart(t *testing.T) {
	t.Parallel()
	dataDir := testkit.DataDir(t)
	envFile := filepath.Join(dataDir, "dev.env")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p := startDev(t, dataDir, "--env-file", envFile)
	for _, k := range []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL"} {
		if p.env[k] == "" {
			t.Fatalf("dev printed no %s", k)
		}
	}
	fileEnv, err := os.ReadFile(envFile)
	if err != nil || !strings.Contains(string(fileEnv), "DATABASE_URL="+p.env["DATABASE_URL"]) {
		t.Fatalf("env file: %q, %v", fileEnv, err)
	}

	conn, err := pgx.Connect(ctx, p.env["DATABASE_URL"])
	if err != nil {
		t.Fatalf("pgx cannot connect to the printed DATABASE_URL: %v", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE survives (n int); INSERT INTO survives SELECT generate_series(1, 42)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	cl := testkit.Client(t, p.brokers())
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "survives"); err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	var recs []*kgo.Record
	for i := 0; i < 30; i++ {
		recs = append(recs, &kgo.Record{Topic: "survives", Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	if p.waitErr != nil {
		t.Fatalf("dev exited with %v after SIGTERM:\n%s", p.waitErr, p.stderr)
	}
	if alive(p.pgPID) {
		t.Fatalf("postmaster %d survived SIGTERM of dev", p.pgPID)
	}
	if children := childrenOf(p.pgPID); len(children) > 0 {
		t.Fatalf("postgres backends %v survived", children)
	}
	for _, addr := range []string{p.brokers()[0], strings.TrimPrefix(p.env["SCHEMA_REGISTRY_URL"], "http://")} {
		if c, err := (&netDialer).DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after SIGTERM", addr)
		}
	}
	if _, err := os.Stat(envFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("env file not removed on exit: %v", err)
	}

	// Restart on the same data dir.
	p2 := startDev(t, dataDir)
	conn, err = pgx.Connect(ctx, p2.env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM survives`).Scan(&n); err != nil || n != 42 {
		t.Fatalf("table after restart: %d rows, %v", n, err)
	}
	conn.Close(ctx)
	cl2 := testkit.Client(t, p2.brokers(), kgo.ConsumeTopics("survives"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]bool{}
	for len(got) < 30 && ctx.Err() == nil {
		cl2.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	if len(got) != 30 {
		t.Fatalf("read %d of 30 records after restart", len(got))
	}
	cl2.Close()
	if err := p2.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	p2.wait(t)
	if p2.waitErr != nil || alive(p2.pgPID) {
		t.Fatalf("after SIGINT: exit %v, postmaster alive %v", p2.waitErr, alive(p2.pgPID))
	}
}

// Even a SIGKILL of dev, which runs no cleanup, leaves no postgres behind:
// the kernel's parent-death signal makes the postmaster shut down.
func TestDevSIGKILLLeavesNoPostgres(t *testing.T) {
	t.Parallel()
	p := startDev(t, testkit.DataDir(t))
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	// The postmaster's shutdown is asynchronous to our wait: poll its state,
	// bounded.
	deadline := time.Now().Add(30 * time.Second)
	for alive(p.pgPID) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still running 30s after dev was killed", p.pgPID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDevMissingPostgresBinaries(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "dev", "--data-dir", t.TempDir(), "--kafka-port", "-1", "--registry-port", "-1")
	cmd.Env = append(testkit.WithoutEnv(os.Environ(), "DATABASE_URL"), "EVENTLINE_PG_BINDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v:\n%s", err, out)
	}
	if !strings.Contains(string(out), "apt-get install postgresql") {
		t.Errorf("error does not name the package to install:\n%s", out)
	}
}
