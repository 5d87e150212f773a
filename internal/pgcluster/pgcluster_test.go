package pgcluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/pgcluster"
	"github.com/eventline/eventline/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testkit.DataDir(t), "pg")
	ctx := context.Background()
	cfg := pgcluster.Config{DataDir: dir, Ephemeral: true, Logger: testkit.Logger(t)}

	c, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatalf("connecting to %s: %v", c.Redacted(), err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before restart')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	pid := c.PID()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil { // idempotent
		t.Fatalf("second Stop: %v", err)
	}
	if processAlive(pid) {
		t.Fatalf("postmaster %d still alive after Stop", pid)
	}

	c2, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	conn, err = pgx.Connect(ctx, c2.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "before restart" {
		t.Fatalf("row after restart: %q, %v", v, err)
	}
	// Logical decoding is available (the relay's logical mode).
	var level string
	if err := conn.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil || level != "logical" {
		t.Errorf("wal_level %q, %v; want logical", level, err)
	}
	if strings.Contains(c2.Redacted(), mustPassword(t, dir)) {
		t.Fatalf("Redacted() shows the password: %s", c2.Redacted())
	}
}

// The password authenticates; a wrong one does not.
func TestPasswordRequired(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testkit.DataDir(t), "pg")
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: dir, Ephemeral: true, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	bad := strings.Replace(c.URL(), mustPassword(t, dir), "wrong", 1)
	_, err = pgx.Connect(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("connecting with a wrong password: %v", err)
	}
}

func TestMissingBinaries(t *testing.T) {
	t.Setenv("EVENTLINE_PG_BINDIR", t.TempDir())
	_, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: filepath.Join(t.TempDir(), "pg")})
	if !errors.Is(err, pgcluster.ErrNoBinaries) {
		t.Fatalf("want ErrNoBinaries, got %v", err)
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("error does not name the package: %v", err)
	}
}

// As root the server runs as `postgres`, which cannot enter t.TempDir()'s
// 0700 directories: the error says which directory and what to do.
func TestUnreachableDataDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user") // not missing infrastructure: a different code path
	}
	parent := t.TempDir() // mode 0700
	_, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: filepath.Join(parent, "pg"), Logger: testkit.Logger(t)})
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "chmod o+x") {
		t.Fatalf("want an unreachable-dir error naming the fix, got %v", err)
	}
}

func mustPassword(t *testing.T, dir string) string {
	b, err := os.ReadFile(dir + ".password")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// A data directory that holds something other than a cluster eventline
// started to create is refused, not deleted; one left by an interrupted
// initdb of eventline's (its marker is there) is cleared and initialised.
// The server log is readable by its owner only.
func TestForeignDataDirRefused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testkit.DataDir(t), "pg")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(dir, "thesis.tex")
	if err := os.WriteFile(precious, []byte("years of work"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true, Logger: testkit.Logger(t)})
	if err == nil || !strings.Contains(err.Error(), "refusing to delete") {
		t.Fatalf("want a refusal, got %v", err)
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatalf("the directory's content is gone: %v", err)
	}

	// An interrupted initdb of ours: the marker is next to the directory.
	if err := os.WriteFile(dir+".initdb", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())
	if _, err := os.Stat(dir + ".initdb"); !os.IsNotExist(err) {
		t.Errorf("marker left after initdb: %v", err)
	}
	st, err := os.Stat(dir + ".log")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("server log mode %v, want 0600", st.Mode().Perm())
	}
}
