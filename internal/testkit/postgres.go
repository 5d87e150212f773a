package testkit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/pgcluster"
)

// PostgresServer is a PostgreSQL cluster of the test's own, restartable on the
// same port (so the URLs the relay and writers hold stay valid; a stable
// port, which no outgoing connection takes while the server is down).
type PostgresServer struct {
	dir string
	cfg pgcluster.Config
	c   *pgcluster.Cluster
}

// RestartablePostgres starts a durable cluster for t alone, stopped when t
// ends; settings override the server's (e.g. wal_level).
func RestartablePostgres(t *testing.T, settings ...map[string]string) *PostgresServer {
	t.Helper()
	dir, err := TempDir("eventline-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Durable (not Ephemeral): an immediate shutdown must not lose what
	// was reported committed, or a missing event would be PostgreSQL's
	// doing, not the relay's.
	s := &PostgresServer{dir: dir, cfg: pgcluster.Config{DataDir: filepath.Join(dir, "pg"), Logger: Logger(t), Settings: map[string]string{}}}
	for _, m := range settings {
		for k, v := range m {
			s.cfg.Settings[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Another program may bind the port between StablePort's probe and
	// the server's bind: the first start may pick another one.
	for range 3 {
		s.cfg.Port = StablePort(t)
		if s.c, err = pgcluster.Start(ctx, s.cfg); err == nil || !strings.Contains(err.Error(), "could not bind") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.c.Stop(ctx); err != nil {
			t.Errorf("stopping postgres: %v", err)
		}
	})
	return s
}

// URL of the cluster's postgres database.
func (s *PostgresServer) URL() string { return s.c.URL() }

// Restart stops the server (fast shutdown, or immediate: SIGQUIT, as after
// a crash), keeps it down for down, and starts it again on the same port.
func (s *PostgresServer) Restart(t *testing.T, immediate bool, down time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if immediate {
		if err := syscall.Kill(s.c.PID(), syscall.SIGQUIT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.c.Done():
		case <-ctx.Done():
			t.Fatal("postgres still running after SIGQUIT")
		}
	}
	if err := s.c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(down) // the outage itself
	c, err := pgcluster.Start(ctx, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.c = c
}

// WALFlushedPast returns a WAL position past every commit that has returned,
// which a logical replication slot is sure to pass. Not
// pg_current_wal_lsn, the write position: with synchronous_commit off (the
// test clusters) a returned commit can lie past it. The insert position is
// read in a transaction that takes an xid and commits synchronously, so
// the WAL up to it is flushed (a walsender decodes only flushed WAL) and a
// commit record follows it, without waiting for the WAL writer.
func WALFlushedPast(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}) (string, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var lsn string
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
		return "", err
	}
	if err := tx.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text FROM (SELECT pg_current_xact_id()) x`).Scan(&lsn); err != nil {
		return "", err
	}
	return lsn, tx.Commit(ctx)
}
